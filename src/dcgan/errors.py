"""The one exception type for mistakes a user can make, and how entry points report it: one
line on stderr and exit code 2 (`exit_with`; `reports_errors` and `ArgumentParser` for the
argparse commands, whose usage errors take the same form)."""

from __future__ import annotations

import argparse
import difflib
import functools
import logging
import sys
from typing import Any, Callable, NoReturn


class DCGANError(Exception):
    """Something the user can fix: a bad config value, a missing folder, an unreadable file.

    The message says what is wrong and what to do; entry points print it as one line.
    """

    exit_code = 2


def exit_with(error: DCGANError) -> NoReturn:
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


def usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """An argparse usage error as one line and exit code 2, like every DCGANError (argparse
    itself prints the whole usage block first). An unknown option names the closest known."""
    if message.startswith("unrecognized arguments:"):
        options = {option.lstrip("-"): option for action in parser._actions
                   for option in action.option_strings if option.startswith("--")}
        for word in message.partition(":")[2].split():
            close = difflib.get_close_matches(word.partition("=")[0].lstrip("-"), options,
                                              n=2, cutoff=0.6)
            if word.startswith("-") and close:
                message += f"; did you mean {' or '.join(options[name] for name in close)}?"
                break
    exit_with(DCGANError(message))


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the dcgan commands: `--help` prints the full help, and a usage error (a
    missing or unknown argument, a bad value) is one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        usage_error(self, message)
