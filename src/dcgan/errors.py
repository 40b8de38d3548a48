"""The one exception type for mistakes a user can make, and how entry points report it."""

from __future__ import annotations

import sys


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
