"""Errors of the landing stage, worded for a gateway operator."""


class FileRejected(Exception):
    """The whole file cannot be loaded; the message says why in plain words."""

    def __init__(self, reason: str) -> None:
        # PostgreSQL text cannot hold NUL; a reason may quote bytes of a hostile file.
        reason = reason.replace("\x00", "\\x00")
        super().__init__(reason)
        self.reason = reason
