"""The one exception type for mistakes a user can make, and how entry points report it: one
line on stderr and exit code 2 (`exit_with`, and `reports_errors` for argparse commands)."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Callable


class DCGANError(Exception):
    """Something the user can fix: a bad config value, a missing folder, an unreadable file.

    The message says what is wrong and what to do; entry points print it as one line.
    """

    exit_code = 2


def exit_with(error: DCGANError) -> None:
    """Print the error as one line on stderr and exit with its code (2; no traceback)."""
    message = " ".join(str(error).split())
    sys.stderr.write(f"dcgan: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(error.exit_code)


def reports_errors(main: Callable[..., None]) -> Callable[..., None]:
    """Wrap an argparse entry point: logging to stderr as plain lines, and a DCGANError as one
    line on stderr with its exit code instead of a traceback."""

    @functools.wraps(main)
    def entry_point(*args: Any, **kwargs: Any) -> None:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        try:
            main(*args, **kwargs)
        except DCGANError as error:
            exit_with(error)

    return entry_point
