"""One landing file's states on its way through a batch, one method per transition.

    listed -> skipped        its content is loaded already (another path, or earlier in the batch)
    listed -> healed         loaded by a run that stopped before moving it: only the move is left
    listed -> open -> written (once per chunk) -> committed
    listed | open | written -> quarantined   with a reason; nothing of it is loaded
    listed | open | written -> left          changed or vanished while read: the next run takes it

A file's manifest row is written with the batch's transaction, with final counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from energy_pipelines.landing.discover import LandingFile
from energy_pipelines.landing.read import RawFile
from energy_pipelines.load.manifest import LoadedFile, ManifestRow

FileState = Literal[
    "listed", "skipped", "healed", "open", "written", "committed", "quarantined", "left"
]
_NEXT: dict[FileState, tuple[FileState, ...]] = {
    "listed": ("skipped", "healed", "open", "quarantined", "left"),
    "open": ("written", "quarantined", "left"),
    "written": ("written", "committed", "quarantined", "left"),
}
COUNTS = ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate", "rows_conflicting")


@dataclass
class FileOutcome:
    """What a run did to one file: its manifest row, file_id and where the file went."""

    manifest: ManifestRow
    file_id: int | None
    moved_to: str | None
    # True when the file had been loaded by an earlier run that stopped before moving it.
    healed: bool = False
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)


class FileLoad:
    """A file of a batch: its content hash, rows read whole (small files), state and manifest."""

    def __init__(self, file: LandingFile, stream: str, run_id: str | None, at: datetime) -> None:
        self.file = file
        self.state: FileState = "listed"
        self.sha256 = ""
        self.raw: RawFile | None = None
        self.file_id: int | None = None
        self.moved_to: str | None = None
        self.manifest = ManifestRow(
            stream=stream,
            path=file.relative_path,
            sha256="",
            size_bytes=file.size_bytes,
            status="loaded",
            started_at=at,
            run_id=run_id,
            notes=file.notes,
        )

    @property
    def path(self) -> str:
        return self.file.relative_path

    def _to(self, state: FileState) -> None:
        if state not in _NEXT.get(self.state, ()):
            raise RuntimeError(f"{self.path}: no transition from {self.state} to {state}")
        self.state = state

    def hashed(self, sha256: str) -> None:
        self.sha256 = self.manifest.sha256 = sha256

    def skip(self, same_as: str, file_id: int) -> None:
        self._to("skipped")
        self.manifest.status = "skipped_duplicate"
        self.manifest.error = f"same content as {same_as}, loaded as file {file_id}"

    def heal(self, loaded: LoadedFile) -> None:
        self._to("healed")
        self.file_id = loaded.file_id

    def open(self, file_id: int) -> None:
        self._to("open")
        self.file_id = file_id

    def write(self, counts: dict[str, int], extra_columns: list[str]) -> None:
        """Add one chunk's counts (read = loaded + rejected + duplicate + conflicting)."""
        self._to("written")
        for name in COUNTS:
            setattr(self.manifest, name, getattr(self.manifest, name) + counts[name])
        self.manifest.extra_columns = sorted({*self.manifest.extra_columns, *extra_columns})

    def add_range(self, low: datetime, high: datetime, days: list) -> None:
        m = self.manifest
        m.min_ts = low if m.min_ts is None else min(m.min_ts, low)
        m.max_ts = high if m.max_ts is None else max(m.max_ts, high)
        m.days_touched = sorted({*m.days_touched, *days})

    def quarantine(self, reason: str) -> None:
        self._to("quarantined")
        self.raw = None
        self.manifest.status, self.manifest.error = "quarantined", reason
        for name in COUNTS:
            setattr(self.manifest, name, 0)
        self.manifest.min_ts = self.manifest.max_ts = None
        self.manifest.days_touched = []

    def leave(self) -> None:
        self._to("left")
        self.raw = None

    def commit(self) -> None:
        self._to("committed")

    def reopen(self) -> None:
        """The batch's transaction rolled back: the file is listed again, counts cleared."""
        if self.state in ("open", "written", "skipped", "healed"):
            self.state = "listed"
            self.file_id = None
            self.manifest.status, self.manifest.error = "loaded", None
            for name in COUNTS:
                setattr(self.manifest, name, 0)
            self.manifest.min_ts = self.manifest.max_ts = None
            self.manifest.days_touched = []

    def outcome(self, stage_seconds: dict[str, float] | None = None) -> FileOutcome:
        return FileOutcome(
            self.manifest,
            self.file_id,
            self.moved_to,
            healed=self.state == "healed",
            stage_seconds=stage_seconds or {},
        )
