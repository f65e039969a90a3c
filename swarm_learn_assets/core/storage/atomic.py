"""Atomic file writes: a reader never sees half a file, and a re-run replaces instead of appending."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .faults import WRITE, crash_point
from .locks import pid_alive


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which is not safe while threads write files.
UMASK = _current_umask()
FILE_MODE = 0o666 & ~UMASK
DIR_MODE = 0o777 & ~UMASK

# Temporary names carry the writer's pid, so a later run can tell a dead writer's leftovers from a
# live writer's work in progress: `.<name>.<pid>.<random>.tmp` (files) or `.partial` (folders).
_TEMP_NAME = re.compile(r"^\..+\.(\d+)(\.[^.]+)?\.(tmp|partial)$")
STALE_AFTER_S = 6 * 3600  # a pid may be reused; no write takes this long


def temp_prefix(name: str) -> str:
    """The prefix of a temporary sibling of `name` written by this process."""
    return f".{name}.{os.getpid()}."


def make_folder(folder: Path) -> Path:
    """mkdir -p, with an error that names the file standing where a folder must go."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise NotADirectoryError(f"{blocker} is a file where the output folder {folder} must be; "
                                 "move it away and run again") from None
    return folder


def make_temp_dir(target: Path) -> Path:
    """A fresh hidden folder beside `target` (same file system, so it can be renamed into place),
    with the umask's mode rather than mkdtemp's 0700."""
    target = Path(target)
    make_folder(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), suffix=".partial", dir=target.parent))
    tmp.chmod(DIR_MODE)
    return tmp


def remove_stale_temps(*folders: Path) -> list[Path]:
    """Remove temporary files and folders a killed writer left in `folders`: those whose pid is no
    longer running, or older than STALE_AFTER_S. A live writer's temporary is left alone."""
    removed = []
    now = time.time()
    for folder in folders:
        try:  # temporaries are hidden names: only those are looked at, however large the folder
            with os.scandir(folder) as listing:
                entries = [Path(e.path) for e in listing if e.name.startswith(".")]
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            match = _TEMP_NAME.match(entry.name)
            if not match or int(match.group(1)) == os.getpid():
                continue
            try:
                stale = not pid_alive(int(match.group(1))) or now - entry.lstat().st_mtime > STALE_AFTER_S
            except FileNotFoundError:
                continue
            if stale:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def _write_atomically(path: Path, write: Callable[[Path], None], overwrite: bool = True) -> Path:
    """Write through `write(tmp)` into a temporary sibling of `path`, then rename it into place; with
    `overwrite=False` it is linked into place instead, which fails if `path` exists (even when another
    process created it a moment ago)."""
    path = Path(path)
    make_folder(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp's 0600 would hide the data from the UI and other readers
    finally:
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
        crash_point(WRITE)
    except FileExistsError:
        raise FileExistsError(f"{path} already exists; it is never overwritten") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_parquet(table: pa.Table, path: Path, overwrite: bool = True) -> Path:
    """Write `table` as one parquet file (zstd) atomically. Dictionary pages are left out: on files
    of a few thousand rows they save almost nothing and cost a fifth of the write time."""
    return _write_atomically(
        path, lambda tmp: pq.write_table(table, tmp, compression="zstd", use_dictionary=False), overwrite
    )


def write_json(payload: Any, path: Path) -> Path:
    """Write `payload` as sorted, compact JSON atomically, so equal payloads give equal bytes. Compact
    because Python's C encoder only handles unindented output: ~10× faster (`jq .` indents it)."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False) + "\n"
    return write_text(text, path)


def write_text(text: str, path: Path) -> Path:
    """Write `text` (UTF-8) atomically."""
    return _write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
