"""Micro-batches: a stream's small files loaded many at a time, in ONE transaction.

Gateways drop small files every minute or so; one transaction, lock, validation and COPY per
file would cost far more than the rows. A batch reads its files one by one (a file that cannot
be read is quarantined alone), validates and deduplicates their rows together
(transform/batch.py), writes them with one COPY, and keeps every guarantee per file: one
manifest row each, exact counts (read = loaded + rejected + duplicate + conflicting), its own
quarantined rows. Files are taken in landing-relative path order; a key repeated across files
of a batch is kept from the first of them. A crash at any point leaves a batch all or nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa

from energy_pipelines.analytics.quality_hours_db import add_hour_quality
from energy_pipelines.contract import Stream
from energy_pipelines.faults import crash_point
from energy_pipelines.hot_status.refresh import CANDIDATE_TABLES, write_status_candidates
from energy_pipelines.landing.discover import LandingFile, sha256_of
from energy_pipelines.landing.errors import FileRejected, first_line, printable
from energy_pipelines.landing.read import ROW_NUMBER, RawFile, read_landing_file
from energy_pipelines.landing.read_many import read_files_at_once
from energy_pipelines.load.after_commit import archive_loaded, quarantine_rejected
from energy_pipelines.load.database import Connection
from energy_pipelines.load.history import (
    add_hourly_totals,
    with_file_ids,
    write_history,
    write_rejected_rows,
)
from energy_pipelines.load.manifest import (
    ManifestRow,
    allocate_file_ids,
    find_loaded_many,
    insert_manifest_rows,
    lock_stream,
)
from energy_pipelines.settings import Settings
from energy_pipelines.transform.batch import (
    FILE_INDEX,
    CombinedRows,
    combine,
    conflict_rules_in_batch,
    counts_per_file,
    shape_of,
)
from energy_pipelines.transform.readings import hourly_totals
from energy_pipelines.validate.rules import raw_values_json

log = logging.getLogger(__name__)


@dataclass
class BatchFile:
    """One file of a batch: its content hash, and its rows or why it is rejected whole."""

    file: LandingFile
    sha256: str
    raw: RawFile | None = None
    error: str | None = None


@dataclass
class BatchOutcome:
    """What a batch did to each of its files (manifest row, file_id, where the file went)."""

    manifests: list[tuple[ManifestRow, int | None, bool]] = field(default_factory=list)
    left_for_next_run: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def batches_of(
    files: list[tuple[LandingFile, int]], settings: Settings
) -> Iterator[list[LandingFile]]:
    """Consecutive runs of (file, estimated rows) bounded by the batch limits (files, bytes,
    rows): a batch is read whole before it is written, so these bound its memory."""
    limits = settings.batch_limits
    batch: list[LandingFile] = []
    size = rows = 0
    for file, estimate in files:
        full = (
            len(batch) >= limits.max_files
            or size + file.size_bytes > limits.max_bytes
            or rows + estimate > limits.max_rows
        )
        if batch and full:
            yield batch
            batch, size, rows = [], 0, 0
        batch.append(file)
        size += file.size_bytes
        rows += estimate
    if batch:
        yield batch


def read_batch(files: list[LandingFile], stream: Stream, settings: Settings) -> list[BatchFile]:
    """Hash and read every file; a file that vanished is skipped (another run took it). The
    files of one folder (one gateway, one layout, Parquet or CSV) are read by one call when they
    can be; any other file, or a folder whose files cannot be read together, one by one."""
    entries: list[BatchFile] = []
    for file in files:
        try:
            entries.append(BatchFile(file, sha256_of(file.path)))
        except FileNotFoundError:
            continue
        except PermissionError:
            entries.append(BatchFile(file, "", error=_PERMISSION_DENIED))
    folders: dict[Any, list[BatchFile]] = {}
    for entry in entries:
        if entry.error is None:
            folders.setdefault(entry.file.path.parent, []).append(entry)
    for members in folders.values():
        together = read_files_at_once([m.file for m in members], stream, settings.file_limits)
        if together is not None:
            for member, raw in zip(members, together, strict=True):
                member.raw = raw
            continue
        for member in members:
            _read_one(member, stream, settings)
    return entries


def _read_one(entry: BatchFile, stream: Stream, settings: Settings) -> None:
    try:
        entry.raw = read_landing_file(entry.file, stream, settings.file_limits)
    except FileRejected as rejected:
        entry.error = rejected.reason
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as failure:  # Polars panics derive from BaseException
        entry.error = printable(f"the file could not be parsed: {first_line(failure)[:500]}")


_PERMISSION_DENIED = "the file cannot be read (permission denied): let the pipeline's user read it"


@dataclass
class _Group:
    """Files of one shape, combined and prepared."""

    entries: list[BatchFile]
    combined: CombinedRows
    prepared: Any  # ingest.PreparedFile
    file_ids: list[int] = field(default_factory=list)


def _file_manifest(
    entry: BatchFile, stream: Stream, run_id: str | None, at: datetime
) -> ManifestRow:
    return ManifestRow(
        stream=stream.name,
        path=entry.file.relative_path,
        sha256=entry.sha256,
        size_bytes=entry.file.size_bytes,
        status="loaded",
        started_at=at,
        run_id=run_id,
        notes=entry.file.notes,
    )


def _ranges_per_file(group: _Group) -> pl.DataFrame:
    """file_index -> min_ts, max_ts, days of the rows each file keeps."""
    unique = group.prepared.unique
    if "ts" not in unique.columns:
        return pl.DataFrame(schema={FILE_INDEX: pl.Int32})
    return (
        unique.select(ROW_NUMBER, "ts")
        .join(group.combined.origin, on=ROW_NUMBER)
        .group_by(FILE_INDEX)
        .agg(
            pl.col("ts").min().alias("min_ts"),
            pl.col("ts").max().alias("max_ts"),
            pl.col("ts").dt.date().unique().sort().alias("days"),
        )
    )


def _prepare_groups(
    entries: list[BatchFile], stream: Stream, settings: Settings, at: datetime
) -> list[_Group]:
    from energy_pipelines.ingest import prepare_rows

    shapes: dict[tuple[Any, ...], list[BatchFile]] = {}
    for entry in entries:
        assert entry.raw is not None
        shapes.setdefault(shape_of(entry.raw), []).append(entry)
    groups = []
    for members in shapes.values():
        combined = combine([m.raw for m in members if m.raw is not None])
        prepared, _timings = prepare_rows(combined.raw, stream, settings, at)
        groups.append(_Group(members, combined, prepared))
    return groups


def _screen(
    entries: list[BatchFile], loaded: dict[str, Any]
) -> tuple[list[BatchFile], list[BatchFile], list[BatchFile], list[BatchFile]]:
    """Split a batch: files to load, files already loaded under the same path (healed: an
    earlier run stopped before moving them), files whose content is loaded elsewhere or earlier
    in the batch (skipped), and files rejected whole."""
    to_load, healed, skipped, rejected = [], [], [], []
    seen: set[str] = set()
    for entry in entries:
        if entry.error is not None:
            rejected.append(entry)
        elif entry.sha256 in loaded:
            (healed if loaded[entry.sha256].path == entry.file.relative_path else skipped).append(
                entry
            )
        elif entry.sha256 in seen:
            skipped.append(entry)
        else:
            seen.add(entry.sha256)
            to_load.append(entry)
    return to_load, healed, skipped, rejected


def _write_group(cur: Any, stream: Stream, group: _Group) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Write one prepared group's readings in the batch's transaction; its per-file counts and
    its quarantined rows (written once the files' manifest rows exist)."""
    origin = group.combined.origin
    ids = pl.Series(group.file_ids, dtype=pl.Int64)
    row_file_ids = origin.select(
        ROW_NUMBER,
        pl.col(FILE_INDEX)
        .replace_strict(list(range(len(ids))), ids.to_list(), return_dtype=pl.Int64)
        .alias("file_id"),
    )
    prepared = group.prepared
    # Each staged row's file id, in the staged rows' order.
    staged_ids = pl.from_arrow(prepared.staged.select([ROW_NUMBER])).join(
        row_file_ids, on=ROW_NUMBER, how="left", maintain_order="left"
    )["file_id"]
    staged = with_file_ids(prepared.staged, staged_ids.to_arrow().cast(pa.int64()))
    written = write_history(cur, stream, staged, prepared.ts_range)
    if stream.name in CANDIDATE_TABLES:
        inserted = prepared.unique.filter(
            ~pl.col(ROW_NUMBER).is_in(written.existing_rows.implode())
        )
        inserted = inserted.join(row_file_ids, on=ROW_NUMBER, how="left")
        write_status_candidates(cur, stream, inserted)
        add_hourly_totals(cur, stream, hourly_totals(inserted, stream))
        add_hour_quality(cur, stream, inserted)
    crash_point("after_history_insert")
    stored = _stored_rows(written)
    counts = counts_per_file(
        origin, prepared.rejects, prepared.unique[ROW_NUMBER], stored, len(group.entries)
    )
    return counts, _rejected_rows(group, written.conflicts, stream, row_file_ids)


def _stored_rows(written: Any) -> pl.DataFrame:
    conflicts = written.conflicts[ROW_NUMBER]
    return written.existing_rows.to_frame(ROW_NUMBER).with_columns(
        (~pl.col(ROW_NUMBER).is_in(conflicts.implode())).alias("same_values")
    )


def _rejected_rows(
    group: _Group, conflicts: pl.DataFrame, stream: Stream, row_file_ids: pl.DataFrame
) -> pl.DataFrame:
    """The group's quarantined rows in the files' own numbering, ready for rejected_rows."""
    prepared, origin = group.prepared, group.combined.origin
    paths = [e.file.relative_path for e in group.entries]
    from energy_pipelines.ingest import history_conflict_rejects

    history = history_conflict_rejects(conflicts).with_columns(
        pl.lit(None, pl.Int64).alias("first_row")
    )
    batch_rejects = prepared.rejects.with_columns(pl.lit(None, pl.String).alias("stored_values"))
    rejected = pl.concat([batch_rejects, history], how="diagonal_relaxed")
    if rejected.height == 0:
        return pl.DataFrame()
    raw_json = raw_values_json(group.combined.raw, rejected[ROW_NUMBER])
    rejected = rejected.join(raw_json, on=ROW_NUMBER, how="left").join(
        row_file_ids, on=ROW_NUMBER, how="left"
    )
    in_files = conflict_rules_in_batch(rejected, origin, paths)
    return in_files.select(
        pl.col("file_id"),
        pl.lit(stream.name).alias("stream"),
        pl.col(FILE_INDEX)
        .replace_strict(list(range(len(paths))), paths, return_dtype=pl.String)
        .alias("source_path"),
        ROW_NUMBER,
        "column_name",
        "kind",
        "rule",
        "raw_values",
        "stored_values",
    ).sort("file_id", ROW_NUMBER)


class _BatchChanged(Exception):
    """A file of the batch changed or was loaded by another run meanwhile: redo without it."""


def load_batch(
    conn: Connection,
    files: list[LandingFile],
    stream: Stream,
    settings: Settings,
    run_id: str | None,
) -> list[Any]:
    """Load a batch of small files exactly once (one transaction per max_rows of their rows);
    one FileOutcome per file handled. A file that changes while the batch is read is left for
    the next run, and the batch is loaded without it."""
    started = time.perf_counter()
    entries = read_batch(files, stream, settings)
    read_seconds = time.perf_counter() - started
    outcomes: list[Any] = []
    for part in _row_bounded(entries, settings.batch_limits.max_rows):
        outcomes.extend(_load_entries(conn, part, stream, settings, run_id, read_seconds))
        read_seconds = 0.0
    return outcomes


def _row_bounded(entries: list[BatchFile], max_rows: int) -> Iterator[list[BatchFile]]:
    part: list[BatchFile] = []
    rows = 0
    for entry in entries:
        height = entry.raw.frame.height if entry.raw is not None else 0
        if part and rows + height > max_rows:
            yield part
            part, rows = [], 0
        part.append(entry)
        rows += height
    if part:
        yield part


def _load_entries(
    conn: Connection,
    entries: list[BatchFile],
    stream: Stream,
    settings: Settings,
    run_id: str | None,
    read_seconds: float,
) -> list[Any]:
    at = datetime.now(UTC)
    for _attempt in range(3):
        entries = [e for e in entries if e.file.unchanged()]
        with conn.cursor() as cur:
            loaded = find_loaded_many(cur, stream.name, [e.sha256 for e in entries if e.sha256])
        conn.rollback()
        prepare_started = time.perf_counter()
        groups = _prepare_groups(_screen(entries, loaded)[0], stream, settings, at)
        timings = {"read": read_seconds, "validate": time.perf_counter() - prepare_started}
        try:
            return _commit_batch(conn, stream, settings, run_id, at, groups, entries, timings)
        except _BatchChanged as changed:
            conn.rollback()
            log.info("batch redone: %s", changed)
    raise RuntimeError(f"a batch of {len(entries)} {stream.name} files kept changing; try again")


def _commit_batch(
    conn: Connection,
    stream: Stream,
    settings: Settings,
    run_id: str | None,
    at: datetime,
    groups: list[_Group],
    entries: list[BatchFile],
    timings: dict[str, float],
) -> list[Any]:
    from energy_pipelines.ingest import FileOutcome

    load_started = time.perf_counter()
    with conn.cursor() as cur:
        lock_stream(cur, stream.name)
        loaded = find_loaded_many(cur, stream.name, [e.sha256 for e in entries if e.sha256])
        members = [e for g in groups for e in g.entries]
        if any(e.sha256 in loaded for e in members):
            raise _BatchChanged("a file of the batch was loaded by another run meanwhile")
        manifests = _loaded_rows(cur, stream, run_id, at, groups)
        rejected_rows = []
        for group in groups:
            counts, rejected = _write_group(cur, stream, group)
            rejected_rows.append(rejected)
            for index, row in enumerate(counts.iter_rows(named=True)):
                manifest = manifests[group.file_ids[index]]
                manifest.rows_read, manifest.rows_loaded = row["read"], row["loaded"]
                manifest.rows_rejected, manifest.rows_duplicate = row["rejected"], row["duplicate"]
                manifest.rows_conflicting = row["conflicting"]
        insert_manifest_rows(cur, list(manifests.values()), list(manifests))
        for rejected in rejected_rows:
            write_rejected_rows(cur, rejected)
        by_sha = {m.sha256: (i, m.path) for i, m in manifests.items()}
        _, healed, skipped, rejected = _screen(entries, loaded)
        others = _insert_other_rows(cur, stream, run_id, at, loaded, by_sha, skipped, rejected)
        crash_point("before_commit")
        changed = [e.file.relative_path for e in members if not e.file.unchanged()]
        if changed:
            # What was parsed may not be what the manifest's hash describes.
            raise _BatchChanged(f"changed while the batch was read: {', '.join(changed)}")
    conn.commit()
    timings["load"] = time.perf_counter() - load_started
    crash_point("after_commit")
    outcomes: list[Any] = []
    files = {e.file.relative_path: e for e in entries}
    for file_id, manifest in manifests.items():
        moved = _move(conn, files[manifest.path], file_id, settings, archive=True)
        # The batch's stage seconds go to its first file, so sums over files stay true.
        stages = dict(timings) if not outcomes else {}
        outcomes.append(FileOutcome(manifest, file_id, moved, stage_seconds=stages))
    for entry in healed:
        manifest = _file_manifest(entry, stream, run_id, at)
        file_id = loaded[entry.sha256].file_id
        moved = _move(conn, entry, file_id, settings, archive=True)
        outcomes.append(FileOutcome(manifest, file_id, moved, healed=True))
    for entry, manifest, file_id in others:
        moved = _move(conn, entry, file_id, settings, archive=manifest.status != "quarantined")
        outcomes.append(FileOutcome(manifest, file_id, moved))
    return outcomes


def _loaded_rows(
    cur: Any, stream: Stream, run_id: str | None, at: datetime, groups: list[_Group]
) -> dict[int, ManifestRow]:
    """The manifest rows of the files to load, under file ids drawn now (the rows are inserted
    once their counts are known); file_id -> row, ascending."""
    rows: list[ManifestRow] = []
    for group in groups:
        ranges = {r[FILE_INDEX]: r for r in _ranges_per_file(group).iter_rows(named=True)}
        for index, entry in enumerate(group.entries):
            manifest = _file_manifest(entry, stream, run_id, at)
            assert entry.raw is not None
            manifest.extra_columns = entry.raw.extra_columns
            if index in ranges:
                manifest.min_ts, manifest.max_ts = ranges[index]["min_ts"], ranges[index]["max_ts"]
                manifest.days_touched = ranges[index]["days"]
            rows.append(manifest)
    ids = allocate_file_ids(cur, len(rows))
    position = 0
    for group in groups:
        group.file_ids = ids[position : position + len(group.entries)]
        position += len(group.entries)
    return dict(zip(ids, rows, strict=True))


def _insert_other_rows(
    cur: Any,
    stream: Stream,
    run_id: str | None,
    at: datetime,
    loaded: dict[str, Any],
    loaded_now: dict[str, tuple[int, str]],
    skipped: list[BatchFile],
    rejected: list[BatchFile],
) -> list[tuple[BatchFile, ManifestRow, int]]:
    """Manifest rows of files skipped as content already loaded, and of files rejected whole."""
    rows: list[tuple[BatchFile, ManifestRow]] = []
    for entry in skipped:
        manifest = _file_manifest(entry, stream, run_id, at)
        earlier = loaded.get(entry.sha256)
        file_id, path = (earlier.file_id, earlier.path) if earlier else loaded_now[entry.sha256]
        manifest.status = "skipped_duplicate"
        manifest.error = f"same content as {path}, loaded as file {file_id}"
        rows.append((entry, manifest))
    for entry in rejected:
        manifest = _file_manifest(entry, stream, run_id, at)
        manifest.status, manifest.error = "quarantined", entry.error
        rows.append((entry, manifest))
    ids = insert_manifest_rows(cur, [m for _, m in rows])
    return [(e, m, i) for (e, m), i in zip(rows, ids, strict=True)]


def _move(
    conn: Connection, entry: BatchFile, file_id: int, settings: Settings, archive: bool
) -> Any:
    """Move a handled file out of the waiting area. The manifest is committed already: a move
    that fails leaves the file where it is, and the next run recognises it by its content."""
    if archive:
        return archive_loaded(conn, entry.file, file_id, settings.landing_dir)
    return quarantine_rejected(entry.file, settings.landing_dir, entry.error or "", entry.sha256)
