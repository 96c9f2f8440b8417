"""Mutated landing files through the real loader: it never crashes or hangs, and the
counts of every file it loads reconcile.

Hypothesis mutates a valid CSV, gzip-compressed CSV or Parquet file (byte flips, truncation,
insertion of hostile tokens, deletion, line shuffles and repeats), drops it into a fresh
landing folder and runs `ingest_stream` against PostgreSQL. The examples of one test share
one database: content already loaded is skipped as a duplicate (same sha256), and rows whose
key is already stored count as duplicates or conflicts; both are expected behaviour.

ENERGY_FUZZ_EXAMPLES sets the examples per format (default 40; e.g. 2000 by hand).
"""

from __future__ import annotations

import dataclasses
import faulthandler
import gzip
import io
import json
import os
import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from energy_pipelines.contract import METER
from energy_pipelines.ingest import ingest_stream
from energy_pipelines.load.reconcile import reconcile_run
from energy_pipelines.settings import Settings
from tests.conftest import query
from tests.helpers import METER_HEADER

EXAMPLES = int(os.environ.get("ENERGY_FUZZ_EXAMPLES", "40"))
# A hang is a failure: the example's deadline reports slow examples, and a watchdog ends the
# process with every thread's traceback if one example never returns.
DEADLINE = timedelta(seconds=20)
HANG_SECONDS = 120

TS = datetime(2026, 2, 11, 10, 0, tzinfo=UTC)


def _base_rows() -> list[str]:
    rows = [
        f"m-{i % 4},{0.25 * i:g},{228 + i % 5},{(TS + timedelta(minutes=i)):%Y-%m-%dT%H:%M:%SZ}"
        for i in range(16)
    ]
    rows[5] = "m-1,-1,230,2026-02-11T10:05:00Z"  # invalid: negative kWh
    rows[9] = rows[8]  # exact repeat
    return rows


BASE_CSV = ("\n".join([METER_HEADER, *_base_rows()]) + "\n").encode()


def _base_parquet() -> bytes:
    table = pa.table(
        {
            "meterId": pa.array([f"m-{i % 4}" for i in range(16)]).dictionary_encode(),
            "kwhConsumedAc": pa.array([0.25 * i for i in range(16)]),
            "voltage": pa.array([228.0 + i % 5 for i in range(16)]),
            "timestamp": pa.array(
                [TS + timedelta(minutes=i) for i in range(16)], pa.timestamp("us", tz="UTC")
            ),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=8)
    return buffer.getvalue()


BASES = {
    "csv": BASE_CSV,
    "csv.gz": gzip.compress(BASE_CSV, mtime=0),
    "parquet": _base_parquet(),
}

TOKENS = [
    b"\x00",
    b'"',
    b",",
    b";",
    b"\n",
    b"\r\n",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xc3",
    b"NaN",
    b"-inf",
    b"1e308",
    b"5e-324",
    b"-0",
    b"'; DROP TABLE meter_readings_history; --",
    b'=HYPERLINK("http://x","y")',
    b"2026-02-30T10:00:00Z",
    b"1970-01-01T00:00:00Z",
    b"PAR1",
]

position = st.integers(min_value=0, max_value=2**31)
mutation = st.one_of(
    st.tuples(st.just("flip"), position, st.integers(min_value=1, max_value=255)),
    st.tuples(st.just("truncate"), position),
    st.tuples(
        st.just("insert"), position, st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=16)
    ),
    st.tuples(st.just("delete"), position, st.integers(min_value=1, max_value=32)),
    st.tuples(st.just("shuffle_lines"), st.integers(min_value=0, max_value=2**32)),
    st.tuples(st.just("repeat_line"), position),
    # A flip before a Parquet footer: the file still opens, its pages carry odd values.
    st.tuples(st.just("flip_body"), position, st.integers(min_value=1, max_value=255)),
)


def _body_length(data: bytes) -> int:
    """Bytes before the footer of a Parquet file; all of any other file."""
    if len(data) > 12 and data.startswith(b"PAR1") and data.endswith(b"PAR1"):
        footer = int.from_bytes(data[-8:-4], "little")
        if len(data) - 8 - footer > 4:
            return len(data) - 8 - footer
    return len(data)


def mutate(data: bytes, mutations: list[tuple]) -> bytes:
    for name, *args in mutations:
        at = args[0] % (len(data) + 1) if name != "shuffle_lines" else 0
        if name in ("flip", "flip_body") and data:
            at = args[0] % (_body_length(data) if name == "flip_body" else len(data))
            data = data[:at] + bytes([data[at] ^ args[1]]) + data[at + 1 :]
        elif name == "truncate":
            data = data[:at]
        elif name == "insert":
            data = data[:at] + args[1] + data[at:]
        elif name == "delete":
            data = data[:at] + data[at + args[1] :]
        elif name == "shuffle_lines":
            lines = data.split(b"\n")
            random.Random(args[0]).shuffle(lines)
            data = b"\n".join(lines)
        elif name == "repeat_line":
            lines = data.split(b"\n")
            index = args[0] % len(lines)
            lines.insert(index, lines[index])
            data = b"\n".join(lines)
    return data


class Loader:
    """One database for all examples of a test; a fresh landing folder for each example."""

    def __init__(self, db: Any, settings: Settings, root: Path) -> None:
        self.db = db
        self.settings = settings
        self.root = root
        self.examples = 0
        self.loaded_sha256: set[str] = set()

    def run(self, suffix: str, data: bytes) -> None:
        self.examples += 1
        run_id = f"fuzz-{self.examples}"
        # A new name each time: the same content again is then a skipped duplicate.
        name = f"example-{self.examples}.{suffix}"
        landing = Path(tempfile.mkdtemp(dir=self.root)) / "landing"
        for stream in ("meter", "vehicle", "correlation"):
            (landing / stream).mkdir(parents=True)
        (landing / "meter" / name).write_bytes(data)
        settings = dataclasses.replace(self.settings, landing_dir=landing)

        faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
        try:
            outcomes = ingest_stream(self.db, METER, settings, run_id=run_id)
        except BaseException:
            # Leave the shared connection usable, so the next example reports its own result.
            self.db.rollback()
            raise
        finally:
            faulthandler.cancel_dump_traceback_later()

        [outcome] = outcomes
        manifest = outcome.manifest
        if currently_in_test_context():
            event(f"status: {manifest.status}")  # shown by --hypothesis-show-statistics
        assert manifest.path == f"meter/{name}"
        assert list((landing / "meter").iterdir()) == [], "the file must leave the waiting area"
        if manifest.status == "loaded":
            assert not outcome.healed
            assert manifest.sha256 not in self.loaded_sha256
            self.loaded_sha256.add(manifest.sha256)
            assert manifest.rows_read == (
                manifest.rows_loaded
                + manifest.rows_rejected
                + manifest.rows_duplicate
                + manifest.rows_conflicting
            )
            assert reconcile_run(self.db, METER, run_id).files_not_reconciled == []
            [(stored,)] = query(
                self.db,
                "SELECT rows_read FROM ingested_files WHERE file_id = $1",
                (outcome.file_id,),
            )
            assert stored == manifest.rows_read
        elif manifest.status == "skipped_duplicate":
            assert manifest.sha256 in self.loaded_sha256
        else:
            assert manifest.status == "quarantined", manifest.status
            assert manifest.error and manifest.error.strip()
            moved = landing / "_quarantine" / "meter" / name
            assert moved.read_bytes() == data
            report = json.loads((moved.parent / f"{name}.error.json").read_text())
            assert report["error"] == manifest.error


FUZZ_SETTINGS = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=DEADLINE,
    # The default run (CI) replays the same examples every time; a run by hand with
    # ENERGY_FUZZ_EXAMPLES explores new ones.
    derandomize="ENERGY_FUZZ_EXAMPLES" not in os.environ,
    database=None,  # no .hypothesis folder in the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def loader(db: Any, settings: Settings, tmp_path: Path) -> Loader:
    return Loader(db, settings, tmp_path)


@pytest.mark.parametrize("file_format", sorted(BASES))
@FUZZ_SETTINGS
@given(mutations=st.lists(mutation, min_size=1, max_size=6), inner=st.booleans())
def test_mutated_file_never_crashes_and_counts_reconcile(
    loader: Loader, file_format: str, mutations: list[tuple], inner: bool
) -> None:
    if file_format == "csv.gz" and inner:
        # Hostile text in a sound gzip container: the reader's CSV path behind decompression.
        data = gzip.compress(mutate(BASE_CSV, mutations), mtime=0)
    else:
        data = mutate(BASES[file_format], mutations)
    try:
        loader.run(file_format, data)
    except BaseException as exc:
        exc.add_note(f"format {file_format}, inner {inner}, mutations {mutations!r}")
        exc.add_note(f"file bytes (first 400): {data[:400]!r}")
        raise


def test_unmutated_bases_load_cleanly(loader: Loader) -> None:
    """The fuzz bases are valid files: anything quarantined comes from a mutation."""
    for file_format, data in sorted(BASES.items()):
        loader.run(file_format, data)
    rows = query(
        loader.db,
        "SELECT path, status, rows_read, rows_loaded, rows_rejected, rows_duplicate,"
        " rows_conflicting FROM ingested_files ORDER BY file_id",
    )
    # The CSV: 16 rows, one invalid, one exact repeat. The gzip copy: other bytes, same rows.
    # The Parquet: same keys and values, except the two keys the CSV did not store.
    assert rows == [
        ("meter/example-1.csv", "loaded", 16, 14, 1, 1, 0),
        ("meter/example-2.csv.gz", "loaded", 16, 0, 1, 15, 0),
        ("meter/example-3.parquet", "loaded", 16, 2, 0, 14, 0),
    ]
