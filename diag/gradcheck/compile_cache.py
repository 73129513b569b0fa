"""Opt-in persistent compilation cache: a later process reuses a check's compiled program.

Most of a first (cold) JAX gradient check is XLA compiling the one program of the check (about
0.3 s of CPU of a 0.45 s check at 1e5 parameters on a 2-core machine). JAX can keep compiled programs on disk
(``jax_compilation_cache_dir``); a second process checking the same function and shapes then
loads the program instead of compiling it. Off by default because it writes to the user's disk:
``diag gradcheck --compile-cache`` or :func:`use_compile_cache` turns it on.

Example:
  >>> from diag.gradcheck.compile_cache import use_compile_cache   # doctest: +SKIP
  >>> use_compile_cache()                                          # doctest: +SKIP
  PosixPath('/home/me/.cache/diag/xla')
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

# Programs that compile faster than this are not worth a disk write and a file to read back (a
# check's own program takes 0.15-0.3 s on a 2-core machine, reading it back ~10 ms; JAX's small
# eager helpers compile in ~0.01-0.03 s).
MIN_COMPILE_SECONDS = 0.05


def default_directory() -> Path:
    from diag.engine.user_cache import cache_dir

    return cache_dir() / "xla"


def use_compile_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Keep JAX's compiled programs in ``directory`` (default: ``xla`` in diag's cache folder, see
    :mod:`diag.engine.user_cache`).

    Returns the folder used, or ``None`` (with a warning) when it cannot be created or written:
    the check then runs as without the cache, compiling in memory.
    """
    path = Path(directory).expanduser() if directory is not None else default_directory()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        warnings.warn(f"compile cache not used: {path} is not writable ({exc.strerror or exc})", stacklevel=2)
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
