"""Rolling sealed spool segments into landing files, and recovery after a crash.

The steps, each fsynced before the next, so exactly one of segment, staged file or published
file holds a segment's records at every point (see spool.py for the whole design):

1. write `<landing>/<stream>/http/.<name>.partial`, fsync, rename to `.<name>.parquet` (staged,
   complete; hidden from discovery by the leading dot), fsync the folder;
2. delete the segment and fsync the spool folder: from here the staged file is the only copy;
3. rename `.<name>.parquet` to `<name>.parquet` (published), fsync the folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from energy_pipelines.contract import Stream
from energy_pipelines.faults import crash_point
from energy_pipelines.gateway.shape import ShapeError, records_of_body, records_to_table

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".jsonl"
HTTP_FOLDER = "http"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_segment(path: Path, stream: Stream) -> tuple[list[dict[str, Any]], int]:
    """The records of a segment and the number of lines skipped.

    Only a line ending in a newline counts: a torn tail (or a line garbled by a crash) was
    never fsynced, so never acknowledged."""
    lines = path.read_bytes().split(b"\n")
    lines.pop()
    records: list[dict[str, Any]] = []
    skipped = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            records.extend(records_of_body(line, stream))
        except ShapeError:
            skipped += 1
    return records, skipped


class SegmentRoller:
    """Turns one stream's sealed segments (in `folder`) into landing files (in `http_dir`)."""

    def __init__(self, stream: Stream, folder: Path, http_dir: Path) -> None:
        self.stream = stream
        self.folder = folder
        self.http_dir = http_dir

    def segment_path(self, name: str) -> Path:
        return self.folder / f"{name}{SEGMENT_SUFFIX}"

    def roll(self, name: str) -> Path | None:
        """Turn a sealed segment into a landing file; see the module docstring for the steps."""
        segment = self.segment_path(name)
        staged = self.http_dir / f".{name}.parquet"
        if not segment.exists():
            # A retry after step 2: the staged file is the only copy left (if any).
            return self.publish(staged) if staged.exists() else None
        records, skipped = read_segment(segment, self.stream)
        if skipped:
            log.warning("%s: skipped %d torn or unreadable line(s)", segment, skipped)
        if records:
            partial = self.http_dir / f".{name}.partial"
            table = records_to_table(records, self.stream)
            with partial.open("wb") as handle:
                pq.write_table(table, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, staged)
            fsync_dir(self.http_dir)
            crash_point("gateway_roll_staged")
        segment.unlink()
        fsync_dir(self.folder)
        crash_point("gateway_roll_segment_deleted")
        return self.publish(staged) if records else None

    def publish(self, staged: Path) -> Path:
        final = staged.with_name(staged.name.removeprefix("."))
        counter = 0
        while final.exists():  # never overwrite: names are unique, but a copy may have come in
            counter += 1
            final = staged.with_name(staged.name.removeprefix(".").replace(".", f"-{counter}.", 1))
        os.rename(staged, final)
        fsync_dir(self.http_dir)
        crash_point("gateway_roll_published")
        return final

    def recover(self, spool_id: str) -> list[Path]:
        """Land what a crashed or stopped gateway left, before accepting anything new. Staged
        files are published only if their name carries `spool_id` (this spool's)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.http_dir.mkdir(parents=True, exist_ok=True)
        landed: list[Path] = []
        mine = f"-{spool_id}-"
        for segment in sorted(self.folder.glob(f"*{SEGMENT_SUFFIX}")):
            name = segment.name.removesuffix(SEGMENT_SUFFIX)
            # The segment still exists, so any staged file of it was never published.
            for leftover in (f".{name}.partial", f".{name}.parquet"):
                (self.http_dir / leftover).unlink(missing_ok=True)
            path = self.roll(name)
            if path is not None:
                landed.append(path)
        for staged in sorted(self.http_dir.glob(f".*{mine}*.parquet")):
            landed.append(self.publish(staged))
        for partial in self.http_dir.glob(f".*{mine}*.partial"):
            partial.unlink(missing_ok=True)
        return landed
