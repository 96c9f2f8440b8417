"""After a file's transaction has committed: move the file out of landing.

Nothing here adds or changes a manifest row. A move that fails (a full disk, no inode left)
leaves the file where it is and says so; the next run finds its content in the manifest (a
loaded file is moved without a new row, a rejected one keeps its row) and moves it then. A file
that changed after it was loaded (a writer that paused past the settle time and went on) gets a
note in ingested_file_notes: what it wrote later was not loaded.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from energy_pipelines.landing.archive import QuarantineIncomplete, archive_file, quarantine_file
from energy_pipelines.landing.discover import LandingFile
from energy_pipelines.load.database import Connection
from energy_pipelines.load.manifest import record_file_note

log = logging.getLogger(__name__)


def archive_loaded(
    conn: Connection, file: LandingFile, file_id: int, landing_root: Path
) -> str | None:
    """Move a file whose outcome is committed (loaded, or the same content loaded before) to
    _archive; its new path (a string: a batch moves thousands of files, and a Path each costs
    more than the move), or None when it stays where it is."""
    try:
        destination = archive_file(file, landing_root)
    except OSError as error:
        if not file.path.exists():
            log.info("%s was moved by another run meanwhile", file.relative_path)
            return None
        log.warning(
            "%s is recorded (manifest file %d) but could not be moved to the archive (%s); it "
            "stays in landing, and the next run recognises its content and moves it",
            file.relative_path,
            file_id,
            error,
        )
        return None
    note = change_after_load(file, destination, landing_root)
    if note is not None:
        log.warning("%s %s", file.relative_path, note)
        _record_note(conn, file_id, note)
    return destination


def quarantine_rejected(
    file: LandingFile, landing_root: Path, reason: str, sha256: str
) -> Path | None:
    """Move a file whose rejection is committed to _quarantine with its report; its new path,
    or None when it stays in landing."""
    try:
        return quarantine_file(file, landing_root, reason, sha256)
    except QuarantineIncomplete as incomplete:
        log.error("%s was %s; the reason is in its manifest row", file.relative_path, incomplete)
        return incomplete.destination
    except OSError as error:
        if not file.path.exists():
            log.info("%s was moved by another run meanwhile", file.relative_path)
            return None
        log.warning(
            "%s is recorded as quarantined but could not be moved to quarantine (%s); it stays "
            "in landing, nothing was written beside it, and the next run moves it without a "
            "second manifest row",
            file.relative_path,
            error,
        )
        return None


def change_after_load(file: LandingFile, moved_to: str, landing_root: Path) -> str | None:
    """What changed in the file between its listing (hashed and loaded as listed) and its move,
    in words; None when nothing did."""
    try:
        info = os.lstat(moved_to)
    except OSError:
        return None
    if info.st_size == file.size_bytes and info.st_mtime_ns == file.modified_ns:
        return None
    try:
        where = Path(moved_to).relative_to(landing_root).as_posix()
    except ValueError:
        where = str(moved_to)
    return (
        f"changed after it was loaded: {file.size_bytes} -> {info.st_size} bytes, modified "
        f"{_iso(file.modified_ns)} -> {_iso(info.st_mtime_ns)}. The rows loaded are those of "
        f"the listed file (its sha256); what was written later is only in {where}, not loaded. "
        "Writers must write under a temporary name and rename when done."
    )


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds")


def _record_note(conn: Connection, file_id: int, note: str) -> None:
    try:
        record_file_note(conn, file_id, note)
    except Exception as error:
        log.error("the note on manifest file %d could not be recorded (%s)", file_id, error)
        with contextlib.suppress(Exception):
            conn.rollback()
