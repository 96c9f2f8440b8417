"""Errors of the landing stage, worded for a gateway operator."""


class FileRejected(Exception):
    """The whole file cannot be loaded; the message says why in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
