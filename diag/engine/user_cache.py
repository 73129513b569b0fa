"""The user's cache folder: small JSON files that spare ``diag explain`` work it did last time.

What is cached is an accelerator, never a source of truth, and it is read as untrusted data:

* only JSON (no pickle, marshal or Python module: a cache file can hold values, never code), read
  from a regular file of at most ``MAX_CACHE_FILE_BYTES``, owned by the user running diag and not
  writable by anyone else (the checks ssh makes of its keys), inside a folder likewise;
* every reader validates what it loads (types, ranges, the hash of what it was made from) and
  treats anything unexpected as a miss;
* any trouble (a corrupt or truncated file, a read-only or missing folder, a full disk) means
  "no cache": the work is done as if there were none, and nothing is printed.

Files are written whole to a temporary name and renamed, so a reader never sees half a file and
two processes writing at once leave one complete file.

The folder is ``$DIAG_CACHE_DIR`` when set, else ``platformdirs.user_cache_dir("diag")``
(``~/.cache/diag`` on Linux, after ``$XDG_CACHE_HOME``); the sweep's result cache lives there too.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

CACHE_DIR_ENV = "DIAG_CACHE_DIR"
MAX_CACHE_FILE_BYTES = 32 << 20


def cache_dir() -> Path:
    """``$DIAG_CACHE_DIR``, else the platform's user cache folder for diag."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    import platformdirs

    return Path(platformdirs.user_cache_dir("diag", appauthor=False))


def _trusted(info: os.stat_result) -> bool:
    """Owned by this user and not writable by group or others (where the platform has owners)."""
    if not hasattr(os, "getuid"):
        return True
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def read_json(name: str):
    """The JSON value in the cache file ``name``, or None (missing, untrusted, too large, corrupt)."""
    folder = cache_dir()
    path = folder / name
    try:
        if not _trusted(os.stat(folder)):
            return None
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_CACHE_FILE_BYTES or not _trusted(info):
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_CACHE_FILE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_CACHE_FILE_BYTES:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def write_json(name: str, value) -> bool:
    """Write ``value`` to the cache file ``name`` (atomically); False when it could not be written."""
    folder = cache_dir()
    try:
        data = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError):
        return False
    if len(data) > MAX_CACHE_FILE_BYTES:
        return False
    import tempfile  # only where a cache file is written (a first run)

    tmp = None
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _trusted(os.stat(folder)):
            return False
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, folder / name)
        return True
    except OSError:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return False
