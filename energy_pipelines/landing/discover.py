"""Find the files that are waiting in landing storage and safe to read."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from energy_pipelines.contract import Stream

DATA_SUFFIXES = (".parquet", ".csv", ".csv.gz")
# Names that writers use while a file is still being written.
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".crdownload")
# A modification time further ahead of this machine's clock than this is not believed (a writer
# with a wrong clock, a copy that kept its source's time): it would never look settled.
FUTURE_TOLERANCE_SECONDS = 2.0


@dataclass(frozen=True)
class LandingFile:
    stream: str
    path: Path
    # Path relative to the landing root, with forward slashes: what the manifest records.
    relative_path: str
    size_bytes: int
    modified_at: float
    modified_ns: int = 0
    # Why the file counts as settled although its modification time lies in the future.
    clock_note: str | None = None

    @property
    def notes(self) -> list[str]:
        """What the manifest notes about the file from its listing."""
        return [self.clock_note] if self.clock_note else []

    def unchanged(self) -> bool:
        """Same size and modification time as when listed: the content read is the content
        listed (a gateway still appending to it would change both)."""
        try:
            info = self.path.lstat()
        except FileNotFoundError:
            return False
        return info.st_size == self.size_bytes and info.st_mtime_ns == self.modified_ns

    @property
    def format(self) -> str:
        name = self.path.name.lower()
        if name.endswith(".csv.gz"):
            return "csv.gz"
        if name.endswith(".csv"):
            return "csv"
        return "parquet"


def is_ignored_name(name: str) -> bool:
    lowered = name.lower()
    return name.startswith((".", "_")) or lowered.endswith(IN_PROGRESS_SUFFIXES)


def is_data_file_name(name: str) -> bool:
    return name.lower().endswith(DATA_SUFFIXES)


def find_waiting_files(
    landing_root: Path,
    stream: Stream,
    settle_seconds: float,
    now: float | None = None,
    limit: int | None = None,
) -> list[LandingFile]:
    """Files of one stream that have stopped changing for `settle_seconds`, in path order.

    Hidden and in-progress names, folders starting with `_` or `.` (archive, quarantine) and
    symbolic links are skipped: a link could point outside the landing root.
    """
    now = time.time() if now is None else now
    stream_root = landing_root / stream.name
    found: list[LandingFile] = []
    if not stream_root.is_dir():
        return found
    for folder, dir_names, file_names in os.walk(stream_root, followlinks=False):
        dir_names[:] = sorted(d for d in dir_names if not is_ignored_name(d))
        for name in sorted(file_names):
            if is_ignored_name(name) or not is_data_file_name(name):
                continue
            path = Path(folder) / name
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue  # deleted between listing and reading
            if not stat.S_ISREG(info.st_mode):
                continue
            changed_at, clock_note = last_change(info, now)
            if now - changed_at < settle_seconds:
                continue
            found.append(
                LandingFile(
                    stream=stream.name,
                    path=path,
                    relative_path=path.relative_to(landing_root).as_posix(),
                    size_bytes=info.st_size,
                    modified_at=info.st_mtime,
                    modified_ns=info.st_mtime_ns,
                    clock_note=clock_note,
                )
            )
    found.sort(key=lambda f: f.relative_path)
    return found[:limit] if limit is not None else found


def last_change(info: os.stat_result, now: float) -> tuple[float, str | None]:
    """When the file last changed, by this machine's clock, and a note when its modification
    time cannot say it. A modification time in the future is replaced by the inode's change
    time, which this machine's kernel sets on every write, rename or time change; if that too
    lies ahead (this clock was set back), the file counts as changed settle time ago, so no
    file waits forever. The checks up to the commit still leave a file that changes for the next
    run."""
    if info.st_mtime <= now + FUTURE_TOLERANCE_SECONDS:
        return info.st_mtime, None
    ahead = f"{_iso(info.st_mtime)} lies {info.st_mtime - now:,.0f} s in the future"
    if info.st_ctime <= now + FUTURE_TOLERANCE_SECONDS:
        return info.st_ctime, (
            f"modification time {ahead} (the writer's clock?): settled by this machine's "
            f"inode change time {_iso(info.st_ctime)}"
        )
    return float("-inf"), (
        f"modification time {ahead}, and the inode change time too "
        f"({_iso(info.st_ctime)}): taken as settled"
    )


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_content(path: Path) -> tuple[bytes, str]:
    """A small file's bytes and their sha256: read once, so the rows parsed from these bytes
    are exactly the content the hash names."""
    with path.open("rb") as handle:
        content = handle.read()
    return content, hashlib.sha256(content).hexdigest()


def count_data_files(landing_root: Path, stream: Stream) -> int:
    """Data files under the stream's folder, settled or not: names only, no stat per file, so a
    caller can size its work before listing the files for real."""
    count = 0
    for _folder, dir_names, file_names in os.walk(landing_root / stream.name, followlinks=False):
        dir_names[:] = [d for d in dir_names if not is_ignored_name(d)]
        count += sum(
            1 for name in file_names if not is_ignored_name(name) and is_data_file_name(name)
        )
    return count
