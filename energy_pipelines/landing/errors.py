"""Errors of the landing stage, worded for a gateway operator."""


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
