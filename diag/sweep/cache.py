"""The sweep's result cache: a run whose bytes and rules did not change is not diagnosed again.

A result is keyed by the run's content (a BLAKE2 hash of its files' bytes, with their names) and
by the *fingerprint* of what diagnosed it: the knowledge base's rule files, the diagnosing code
and diag's version. Editing a rule, adding ``--rules`` or upgrading diag therefore never serves a
stale result, and a run copied or touched without change is still a hit.

Hashing every file on every sweep would cost a full read of the fleet, so a file whose size and
modification time match what was seen last time is trusted to have the same hash (the fast path
``make``, ``rsync`` and git's index take too).

The cache is one SQLite file in the user's cache folder (``platformdirs.user_cache_dir("diag")``,
or ``$DIAG_CACHE_DIR``). It is an accelerator, never a source of truth: a corrupt file is set
aside and rebuilt, a read-only or locked one is used as far as it can be, and any trouble is
reported once through ``warn`` and the sweep goes on without it.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path
from typing import Callable, Iterable

from diag.engine.user_cache import CACHE_DIR_ENV, cache_dir
from diag.sweep.discover import RunRef
from diag.sweep.outcome import RunOutcome

CACHE_FILE = "sweep.sqlite3"
_MAX_RESULTS = 500_000  # rows kept; the oldest go first (a result is a few hundred bytes)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, digest TEXT);
CREATE TABLE IF NOT EXISTS results (run_key TEXT, fingerprint TEXT, outcome TEXT,
                                    PRIMARY KEY (run_key, fingerprint));
"""


def default_cache_dir() -> Path:
    """``$DIAG_CACHE_DIR``, else the platform's user cache folder for diag (shared with the
    knowledge base's compiled form, :mod:`diag.engine.user_cache`)."""
    return cache_dir()


def diagnosis_fingerprint(rule_dirs: Iterable[str] = ()) -> str:
    """A hash of everything that decides a run's diagnosis besides the run itself.

    The built-in and user rule files (names and bytes), the code that reads traces and diagnoses
    them, and diag's version: a change to any of them changes every cache key.
    """
    import diag
    from diag.engine.kb import builtin_rules_dir, rule_files

    digest = hashlib.blake2b(digest_size=16)
    digest.update(diag.__version__.encode())
    for folder in (str(builtin_rules_dir()), *rule_dirs):
        digest.update(b"\0rules\0" + folder.encode())
        try:
            files = rule_files(folder)
        except Exception:  # noqa: BLE001 - a missing folder is reported by the knowledge-base load
            continue
        for path in files:
            digest.update(str(path).encode() + b"\0" + _read_bytes(path))
    package = Path(diag.__file__).parent
    code = [package / "api.py", package / "sniff.py", package / "sweep" / "outcome.py"]
    for part in ("engine", "trace"):
        code += sorted((package / part).glob("*.py"))
    importers = _importers_folder()
    if importers is not None:
        code += sorted(importers.rglob("*.py")) + sorted(importers.rglob("*.yaml"))
    for path in code:
        digest.update(b"\0code\0" + path.name.encode() + b"\0" + _read_bytes(path))
    return digest.hexdigest()


def _importers_folder() -> Path | None:
    try:
        from diag.adapters import importers
    except ImportError:
        return None
    return Path(importers.__file__).parent


def _read_bytes(path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b"<unreadable>"


class ResultCache:
    """Diagnosed rows keyed by run content and diagnosis fingerprint, in one SQLite file.

    Args:
      folder: where the cache file lives (created when missing).
      fingerprint: ``diagnosis_fingerprint(...)`` of the rules and code diagnosing this sweep.
      warn: called once with a sentence when the cache cannot be used fully.
    """

    def __init__(self, folder: str | os.PathLike, fingerprint: str, warn: Callable[[str], None] = lambda _: None):
        self.path = Path(folder) / CACHE_FILE
        self.fingerprint = fingerprint
        self._warn = warn
        self._warned = False
        self._db: sqlite3.Connection | None = None
        self._seen: dict[str, tuple[int, int, str]] = {}
        self._fresh_files: dict[str, tuple[int, int, str]] = {}
        self._wrote = False
        self._open()

    # ------------------------------------------------------------------ opening

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # a read-only parent may still hold a usable cache file
        try:
            self._db = self._connect()
        except sqlite3.OperationalError as e:  # locked by another sweep, cannot be opened or created
            self._disable(f"cannot use the cache at {self.path} ({e}); sweeping without it")
        except sqlite3.DatabaseError as e:  # not a database, or a damaged one
            if self._set_aside_corrupt(e):
                try:
                    self._db = self._connect()
                except sqlite3.Error as again:
                    self._disable(f"cannot use the cache at {self.path} ({again}); sweeping without it")
            else:
                self._disable(f"cannot use the cache at {self.path} ({e}); sweeping without it")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"files", "results"} <= tables:  # a new cache (a read needs no write lock)
                try:
                    db.executescript(_SCHEMA)
                except sqlite3.OperationalError as e:
                    if not _is_read_only(e):
                        raise
                    self._note_read_only()
            self._seen = {row[0]: (row[1], row[2], row[3])
                          for row in db.execute("SELECT path, size, mtime_ns, digest FROM files")}
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _set_aside_corrupt(self, error: sqlite3.DatabaseError) -> bool:
        """Move a file that is not a readable database out of the way; True when that worked."""
        if not self.path.exists():
            return False
        try:
            self.path.replace(self.path.with_suffix(".corrupt"))
        except OSError:
            return False
        self._warn_once(f"the cache at {self.path} was unreadable ({error}); it was set aside and is rebuilt")
        return True

    def _disable(self, message: str) -> None:
        if self._db is not None:
            self._db.close()
        self._db = None
        self._warn_once(message)

    def _note_read_only(self) -> None:
        self._warn_once(f"the cache at {self.path} is read-only: results are read from it but not saved")

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            self._warn(message)

    @property
    def usable(self) -> bool:
        return self._db is not None

    # ------------------------------------------------------------------ keys

    def run_key(self, run: RunRef) -> str | None:
        """The content key of a run, or None when one of its files cannot be read (not cached)."""
        if run.kind == "unlistable" or not run.files:
            return None
        digest = hashlib.blake2b(f"{run.kind}\0{run.run or ''}".encode(), digest_size=16)
        for name in run.files:
            file_digest = self._file_digest(name)
            if file_digest is None:
                return None
            digest.update(b"\0" + os.path.basename(name).encode() + b"\0" + file_digest.encode())
        return digest.hexdigest()

    def _file_digest(self, name: str) -> str | None:
        path = os.path.abspath(name)
        try:
            stat = os.stat(path)
        except OSError:
            return None
        known = self._seen.get(path)
        if known is not None and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
            return known[2]
        try:
            file_digest = _hash_file(path)
        except OSError:
            return None
        entry = (stat.st_size, stat.st_mtime_ns, file_digest)
        self._seen[path] = entry
        self._fresh_files[path] = entry
        return file_digest

    # ------------------------------------------------------------------ lookup and store

    def get_many(self, keys: dict[str, RunRef]) -> dict[str, RunOutcome]:
        """The cached rows of the runs whose keys are given (``{key: run}``), by key."""
        if self._db is None or not keys:
            return {}
        found: dict[str, RunOutcome] = {}
        wanted = list(keys)
        try:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT run_key, outcome FROM results WHERE fingerprint = ? AND run_key IN ({marks})",
                    (self.fingerprint, *chunk))
                for run_key, text in rows:
                    run = keys[run_key]
                    try:
                        outcome = RunOutcome.model_validate_json(text)
                    except ValueError:
                        continue  # a row an older diag wrote differently: diagnose again
                    found[run_key] = outcome.model_copy(update={"path": run.label, "kind": run.kind})
        except sqlite3.Error as e:
            self._disable(f"cannot read the cache at {self.path} ({e}); sweeping without it")
            return {}
        return found

    def put_many(self, items: list[tuple[str, RunOutcome]]) -> None:
        """Save diagnosed rows (``(key, row)``) and the file hashes learned on the way."""
        if self._db is None:
            return
        try:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO results (run_key, fingerprint, outcome) VALUES (?, ?, ?)",
                [(key, self.fingerprint, outcome.model_dump_json()) for key, outcome in items])
            self._db.executemany(
                "INSERT OR REPLACE INTO files (path, size, mtime_ns, digest) VALUES (?, ?, ?, ?)",
                [(path, *entry) for path, entry in self._fresh_files.items()])
            self._db.execute("COMMIT")
            self._fresh_files.clear()
            self._wrote = self._wrote or bool(items)
        except sqlite3.Error as e:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if _is_read_only(e):
                self._note_read_only()
                self._fresh_files.clear()
            else:
                self._disable(f"cannot write the cache at {self.path} ({e}); sweeping without it")

    def close(self) -> None:
        if self._db is None:
            return
        if self._fresh_files:
            self.put_many([])  # file hashes learned from hits on touched or copied files
        if self._db is None:
            return
        try:
            if self._wrote:
                self._db.execute(
                    "DELETE FROM results WHERE rowid <= (SELECT max(rowid) FROM results) - ?", (_MAX_RESULTS,))
        except sqlite3.Error:
            pass  # trimming can wait for the next sweep
        self._db.close()
        self._db = None


def _hash_file(path: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_read_only(error: sqlite3.Error) -> bool:
    return "readonly" in str(error) or "read-only" in str(error)


__all__ = ["CACHE_DIR_ENV", "ResultCache", "default_cache_dir", "diagnosis_fingerprint"]
