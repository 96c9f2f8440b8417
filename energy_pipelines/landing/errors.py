"""Errors of the landing stage, worded for a gateway operator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from polars.exceptions import PanicException

_Item = TypeVar("_Item")


def printable(text: str) -> str:
    """Text PostgreSQL can store: NUL (which a hostile file can carry) shown as \\x00."""
    return text.replace("\x00", "\\x00")


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type when it has none."""
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__


class FileRejected(Exception):
    """The whole file cannot be loaded; the message says why in plain words."""

    def __init__(self, reason: str) -> None:
        # A reason may quote bytes of a hostile file.
        reason = printable(reason)
        super().__init__(reason)
        self.reason = reason


@contextmanager
def failures_as(rejection: Callable[[BaseException], FileRejected]) -> Iterator[None]:
    """Turn a parser's failure inside the block into the FileRejected `rejection` words.

    pyarrow and Polars raise many types for a corrupt file, and a Polars panic derives from
    BaseException, not Exception. A FileRejected passes unchanged, and so do interrupts.
    """
    try:
        yield
    except FileRejected:
        raise
    except (Exception, PanicException) as exc:
        raise rejection(exc) from exc


def rejecting(
    items: Iterator[_Item], rejection: Callable[[BaseException], FileRejected]
) -> Iterator[_Item]:
    """`items`, with their reader's failures turned into FileRejected."""
    while True:
        # Only next() is guarded: what the consumer throws in at the yield must pass untouched.
        with failures_as(rejection):
            try:
                item = next(items)
            except StopIteration:
                return
        yield item
