"""Move handled files out of the waiting area: loaded to _archive, unreadable to _quarantine."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from energy_pipelines.landing.discover import LandingFile

ARCHIVE_DIR = "_archive"
QUARANTINE_DIR = "_quarantine"


def _free_destination(destination: str) -> str:
    """Never overwrite an earlier file of the same name: add a counter before the suffix. (A
    string path: a batch archives thousands of files, and each Path costs more than the check.)"""
    if not os.path.lexists(destination):
        return destination
    folder, name = os.path.split(destination)
    stem, suffix = name, ""
    for known in (".csv.gz", ".parquet", ".csv"):
        if stem.lower().endswith(known):
            stem, suffix = stem[: -len(known)], stem[-len(known) :]
            break
    counter = 1
    while True:
        candidate = os.path.join(folder, f"{stem}.{counter}{suffix}")
        if not os.path.lexists(candidate):
            return candidate
        counter += 1


def _within_stream(file: LandingFile, landing_root: Path) -> Path:
    # Keep the gateway sub-folders: landing/meter/gw-7/a.csv -> _archive/meter/<day>/gw-7/a.csv
    return Path(file.relative_path).relative_to(file.stream)


def archive_file(file: LandingFile, landing_root: Path, when: datetime | None = None) -> str:
    """Move a loaded file to the archive's folder of the day; its new path."""
    day = (when or datetime.now(UTC)).strftime("%Y-%m-%d")
    # One path built from strings: a batch archives thousands of files.
    within = file.relative_path.split("/", 1)[1]
    destination = _free_destination(
        os.path.join(landing_root, ARCHIVE_DIR, file.stream, day, within)
    )
    try:
        os.rename(file.path, destination)
    except FileNotFoundError:
        # The day's folder is made by the first move into it: a batch archives thousands of
        # files into the same few folders, and a check per file would cost a stat each.
        if not file.path.exists():
            raise
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        os.rename(file.path, destination)
    return destination


class QuarantineIncomplete(Exception):
    """The file was moved to quarantine but its report could not be written, nor could the
    file be moved back: it sits at `destination` without its `.error.json`."""

    def __init__(self, message: str, destination: Path) -> None:
        super().__init__(message)
        self.destination = destination


def quarantine_file(file: LandingFile, landing_root: Path, reason: str, sha256: str) -> Path:
    """Move a rejected file to _quarantine beside `<name>.error.json`, both or neither: the
    report is written in full (and flushed to disk) under a hidden name first, then the file and
    the report are renamed into place. When a step fails (a full disk, no inode left) the steps
    before it are undone, the file stays in landing and the OSError is raised."""
    destination = Path(
        _free_destination(
            str(landing_root / QUARANTINE_DIR / file.stream / _within_stream(file, landing_root))
        )
    )
    destination.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "file": file.relative_path,
        "stream": file.stream,
        "error": reason,
        "sha256": sha256,
        "size_bytes": file.size_bytes,
        "quarantined_at": datetime.now(UTC).isoformat(),
        "what_to_do": "Fix the file at its source and drop the corrected file into landing again.",
    }
    error_path = destination.with_name(destination.name + ".error.json")
    # A hidden name: nothing reads it, and a crash before the rename leaves no half report.
    pending = destination.with_name(f".{destination.name}.error.json.tmp")
    try:
        _write_fully(pending, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        file.path.rename(destination)
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    try:
        pending.rename(error_path)
    except OSError as error:
        pending.unlink(missing_ok=True)
        try:
            destination.rename(file.path)
        except OSError:
            raise QuarantineIncomplete(
                f"moved to {destination} but its report could not be written ({error}), "
                "nor could the file be moved back",
                destination,
            ) from error
        raise
    return destination


def _write_fully(path: Path, text: str) -> None:
    """Write, flush and fsync, so a full disk shows here (a filesystem that allocates late
    reports it only at the flush), not as an empty or short file later."""
    with path.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
