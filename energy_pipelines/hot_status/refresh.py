"""Fold readings loaded since the last refresh into the *_current_status tables.

Each load records, in the same transaction, every device's latest inserted reading of the file
(the *_status_candidates tables). A refresh, in one transaction per stream, reduces the
candidates of files loaded since the watermark to the latest per device, UPSERTs them guarded by
`excluded.ts > current.ts` (so a late file never moves a device back in time), deletes the folded
candidates and advances the watermark. A crash before commit leaves everything as it was, so the
next refresh redoes the same work; a second refresh finds nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass

from energy_pipelines.contract import CANDIDATE_TABLES, STATUS_TABLES, STREAM_ORDER, Stream
from energy_pipelines.faults import crash_point
from energy_pipelines.load.database import Connection

HOT_STREAMS: tuple[Stream, ...] = tuple(s for s in STREAM_ORDER if s.status_table)


@dataclass(frozen=True)
class StatusRefresh:
    stream: str
    files: int
    devices_seen: int
    devices_changed: int
    watermark: int


def _upsert_sql(stream: Stream) -> str:
    # Names come from the contract; every value is a parameter.
    device = stream.key[0]
    columns = [*stream.key, *stream.value_columns]  # device, ts, then the values
    listed = ", ".join(columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    return f"""
        WITH latest AS (
            SELECT DISTINCT ON (h.{device}) {", ".join("h." + c for c in columns)}
              FROM {CANDIDATE_TABLES[stream.name]} h
             WHERE h.file_id > $1 AND h.file_id <= $2
             ORDER BY h.{device}, h.ts DESC
        ), changed AS (
            INSERT INTO {STATUS_TABLES[stream.name]} AS current ({listed}, updated_at)
            SELECT {listed}, now() FROM latest
            ON CONFLICT ({device}) DO UPDATE SET {updates}, updated_at = excluded.updated_at
             WHERE excluded.ts > current.ts
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM latest), (SELECT count(*) FROM changed)
    """


def refresh_status(conn: Connection, stream: Stream) -> StatusRefresh:
    with conn.cursor() as cur:
        # Row lock on the watermark serializes concurrent refreshes of the same stream.
        cur.execute(
            "SELECT last_file_id FROM hot_status_watermark WHERE stream = $1 FOR UPDATE",
            (stream.name,),
        )
        watermark = int(cur.fetchone()[0])
        cur.execute(
            """
            SELECT count(*), max(file_id)
              FROM ingested_files
             WHERE stream = $1 AND status = 'loaded' AND file_id > $2 AND rows_loaded > 0
            """,
            (stream.name, watermark),
        )
        files, newest = cur.fetchone()
        if not files:
            conn.rollback()
            return StatusRefresh(stream.name, 0, 0, 0, watermark)
        cur.execute(_upsert_sql(stream), (watermark, newest))
        seen, changed = cur.fetchone()
        cur.execute(f"DELETE FROM {CANDIDATE_TABLES[stream.name]} WHERE file_id <= $1", (newest,))
        crash_point("hot_status_before_commit")
        cur.execute(
            "UPDATE hot_status_watermark SET last_file_id = $2, refreshed_at = now()"
            " WHERE stream = $1",
            (stream.name, newest),
        )
    conn.commit()
    return StatusRefresh(stream.name, int(files), int(seen), int(changed), int(newest))
