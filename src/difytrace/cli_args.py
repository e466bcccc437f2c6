"""Argument types of the command line: a mistake is refused by argparse, naming the option."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer of 1 or more (argparse reports the ``ArgumentTypeError`` with the option).

    >>> positive_int("50")
    50
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value
