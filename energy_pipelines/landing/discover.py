"""Find the files that are waiting in landing storage and safe to read."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from energy_pipelines.contract import Stream

DATA_SUFFIXES = (".parquet", ".csv", ".csv.gz")
# Names that writers use while a file is still being written.
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".crdownload")


@dataclass(frozen=True)
class LandingFile:
    stream: str
    path: Path
    # Path relative to the landing root, with forward slashes: what the manifest records.
    relative_path: str
    size_bytes: int
    modified_at: float
    modified_ns: int = 0

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
            if now - info.st_mtime < settle_seconds:
                continue
            found.append(
                LandingFile(
                    stream=stream.name,
                    path=path,
                    relative_path=path.relative_to(landing_root).as_posix(),
                    size_bytes=info.st_size,
                    modified_at=info.st_mtime,
                    modified_ns=info.st_mtime_ns,
                )
            )
    found.sort(key=lambda f: f.relative_path)
    return found[:limit] if limit is not None else found


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


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
