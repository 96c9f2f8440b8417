"""History read as binary COPY of fixed-width columns, parsed with numpy.

PostgreSQL sends a COPY as one message a row; a result of 8-byte fields is then a plain array
of fixed-size records that numpy reads in place. For a day of 5,000 meters (7.2 M readings) that
took 1.3 s of client CPU through asyncpg, against 2.5 s for the same rows through ADBC.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import numpy as np
import polars as pl

_PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01, where binary timestamptz counts from
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


# Field kinds: a 64-bit integer or timestamp, a double, a 32-bit integer, and a bytea of
# 16 big-endian doubles (the largest interval energies of device_hour_quality, sql/019).
_KINDS = {"i": (">i8", ()), "f": (">f8", ()), "n": (">i4", ()), "t": (">f8", (16,))}


def parse_copy_binary(data: bytes, kinds: str) -> list[np.ndarray]:
    """Columns of a binary COPY whose fields all have a fixed width and are never NULL
    (`kinds`: one character a column, see _KINDS)."""
    if not data.startswith(_COPY_SIGNATURE) or data[-2:] != b"\xff\xff":
        raise ValueError("not a complete binary COPY stream")
    offset = 19 + int.from_bytes(data[15:19], "big")
    fields: list[tuple[Any, ...]] = [("n", ">i2")]
    for i, kind in enumerate(kinds):
        fields += [(f"len{i}", ">i4"), (f"col{i}", *_KINDS[kind])]
    row = np.dtype(fields)
    size = len(data) - offset - 2
    if size % row.itemsize:
        raise ValueError("binary COPY rows are not of the expected width")
    rows = np.frombuffer(data, row, count=size // row.itemsize, offset=offset)
    if (rows["n"] != len(kinds)).any() or any(
        (rows[f"len{i}"] != row[f"col{i}"].itemsize).any() for i in range(len(kinds))
    ):
        raise ValueError("binary COPY rows are not of the expected fields")
    return [
        rows[f"col{i}"].astype(rows[f"col{i}"].dtype.base.newbyteorder("="))
        for i in range(len(kinds))
    ]


async def copy_columns(
    conn: asyncpg.Connection, query: str, *args: Any, kinds: str = "iiff"
) -> list[np.ndarray]:
    """The columns of a query (`kinds` as for parse_copy_binary), by default (hash, ts, kwh,
    value). COPY takes no parameters: asyncpg puts `args` into the text as literals the server
    itself quotes, so they are constants when the statement is planned and a partitioned table
    is pruned to the partitions they bound."""
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    await conn.copy_from_query(query, *args, output=sink, format="binary")
    return parse_copy_binary(b"".join(chunks), kinds)


def device_codes(hashed: np.ndarray, hashes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Each row's device as its index in the list whose id hashes are `hashes` (`order` sorts
    them), from the rows' id hashes."""
    # Rows of a device come in runs (a table loaded in key order): look up each run once.
    heads = np.flatnonzero(np.r_[True, hashed[1:] != hashed[:-1]]) if hashed.size else hashed
    run_hashes = hashed[heads]
    sorted_hashes = hashes[order]
    at = np.searchsorted(sorted_hashes, run_hashes)
    if run_hashes.size and (
        not sorted_hashes.size
        or not np.array_equal(sorted_hashes[at.clip(0, sorted_hashes.size - 1)], run_hashes)
    ):
        raise RuntimeError("a row's device is missing from the hourly totals")
    lengths = np.diff(np.r_[heads, hashed.size])
    return np.repeat(order[at].astype(np.uint32), lengths)


def timestamps_us(column: np.ndarray) -> np.ndarray:
    """Binary COPY timestamps (microseconds since 2000) as microseconds since 1970."""
    return column + _PG_EPOCH_US


def readings_by_device(
    columns: list[np.ndarray], hashes: np.ndarray, order: np.ndarray
) -> pl.DataFrame:
    """History rows (id hash, ts, kwh, value) with the device as its index in the list whose
    id hashes are `hashes`; `order` sorts `hashes`."""
    hashed, ts, kwh, value = columns
    return pl.DataFrame(
        {
            "device": device_codes(hashed, hashes, order),
            "ts": pl.Series(timestamps_us(ts)).cast(pl.Datetime("us", "UTC")),
            "kwh": kwh,
            "value": value,
        }
    )
