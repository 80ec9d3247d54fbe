"""Files every module writes the same way: atomic writes (temp file, fsync, rename), one line on
a write error, a lock shared by concurrent trials, and the lock-load-compute-save cache."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import torch
from filelock import FileLock

from gan.config import GanError

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when what `cached` stores changes


def _nbytes(obj) -> int:
    """Bytes of the tensors in a nested dict/list: about what torch.save writes."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def write_error(path: Path, e: OSError, what: str, needed: int | None = None) -> GanError:
    """One line naming `path`, the reason, and on a full disk the space free and needed."""
    reason = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        sizes = [f"{free / 2**20:.1f} MiB free" if free is not None else ""]
        sizes.append(f"about {needed / 2**20:.1f} MiB needed" if needed else "")
        reason += "".join(f", {s}" for s in sizes if s)
        fix = "free some space (or pass --out / --set data_dir= on a larger disk)"
    else:
        fix = "pass --out DIR (or --set data_dir=DIR) on a writable disk, or fix its permissions"
    return GanError(f"cannot write {what} {path} ({reason}); {fix}")


# the temp files atomic_write writes beside their target: what a killed writer leaves behind
PARTIAL_GLOB = ".*.tmp*"


def atomic_write(
    path: str | Path, write: Callable[[BinaryIO], None], what: str, needed: int | None = None
) -> Path:
    """write(f) into a temp file beside `path`, fsync, rename: readers never see half a file; on
    a write error (read-only, full disk) the temp file is removed and `path` left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")  # PARTIAL_GLOB matches it
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        # a partial file would keep the disk full, so that every rerun fails the same way
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise write_error(path, e, what, needed) from None
    return path


def atomic_save(obj, path: str | Path, what: str = "checkpoint") -> Path:
    """torch.save `obj` to `path` atomically (atomic_write)."""
    return atomic_write(path, lambda f: torch.save(obj, f), what, _nbytes(obj))


def atomic_text(text: str, path: str | Path, what: str) -> Path:
    """Write `text` to `path` atomically (atomic_write)."""
    return atomic_write(path, lambda f: f.write(text.encode()), what, len(text))


def copy_atomic(src: str | Path, dst: str | Path, what: str = "checkpoint") -> Path:
    """Copy src to dst atomically (atomic_write); no partial file stays on an error."""

    def copy(f: BinaryIO) -> None:
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f)

    return atomic_write(dst, copy, what, os.path.getsize(src))


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if needed), shared by processes on this host or NFS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield


def cached(cache_dir: str | Path, kind: str, key: str, compute: Callable[[], dict]) -> dict:
    """The dict of tensors saved as <cache_dir>/<kind>_<hash of key>.pt, computed and saved on a
    miss; safe for concurrent trials."""
    key = f"v{CACHE_VERSION}|{kind}|{key}"
    path = Path(cache_dir) / f"{kind}_{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    # the lock makes a second trial wait for the first one's result instead of recomputing it;
    # the atomic write means a reader never sees a half-written file
    with file_lock(path.with_name(path.name + ".lock")):
        if path.exists():
            try:
                value = torch.load(path, map_location="cpu", weights_only=True)
                if value.get("key") == key:
                    log.debug("cache hit %s", path)
                    return value
            except Exception:  # noqa: BLE001  (a torn or foreign file is rebuilt, not fatal)
                pass
            log.warning("cache %s is unreadable or stale; rebuilding it", path)
        value = {**compute(), "key": key}
        atomic_save(value, path, "cache (config key data_dir)")
        return value
