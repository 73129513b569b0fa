"""Load a user's ``module:function`` or ``file.py:function`` target, and call it, with errors a user can act on.

Module and file resolution is ``diag.gradcheck.target``'s (the same rules as ``diag gradcheck``);
this adds what a command that runs arbitrary user code needs: a syntax error, a failed import or
an exception while importing or calling the target becomes one ``DiagInputError`` naming the file
and line, never a traceback. Used by ``diag preflight``.
"""

from __future__ import annotations

import traceback
from typing import Any, Callable

from diag.errors import DiagInputError, Problem
from diag.gradcheck.target import _import, user_frame_line


def load_callable(spec: str, *, contract: str) -> tuple[Callable[..., Any], str]:
    """Import ``spec`` and return the callable it names, and the spec.

    Raises:
      DiagInputError: the spec is malformed, the file or module is missing or broken, or the
        attribute is missing or not callable. The message names the file (and line) and ends
        with ``contract``.
    """
    if ":" not in spec:
        raise DiagInputError(Problem(path=spec, message="missing ':function' after the module or file"), hint=contract)
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise DiagInputError(Problem(path=spec, message="expected MODULE:FUNCTION or FILE.py:FUNCTION"), hint=contract)
    try:
        module = _import(where)
    except DiagInputError as e:
        raise DiagInputError(e.problem, hint=contract) from None
    except SyntaxError as e:
        raise DiagInputError(Problem(path=e.filename or where, line=e.lineno, message=f"syntax error: {e.msg}"),
                             hint=contract) from None
    except ImportError as e:
        raise DiagInputError(Problem(path=where, line=user_frame_line(e, where), message=f"importing it failed: {e}"),
                             hint=contract) from None
    except Exception as e:  # the user's module raised at import time
        raise DiagInputError(Problem(path=where, line=user_frame_line(e, where),
                                     message=f"importing it raised {type(e).__name__}: {e}"), hint=contract) from None
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            available = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise DiagInputError(Problem(path=where, message=f"has no attribute {attr!r}"),
                                 hint=f"callables there: {', '.join(available[:12]) or 'none'}; {contract}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise DiagInputError(Problem(path=spec, message=f"{attr!r} is not callable"), hint=contract)
    return factory, spec


def call_target(factory: Callable[[], Any], spec: str, *, contract: str) -> Any:
    """Call a target without arguments; an exception it raises becomes a ``DiagInputError`` with its line."""
    where, _, attr = spec.rpartition(":")
    try:
        return factory()
    except Exception as e:
        raise DiagInputError(Problem(path=where, line=user_frame_line(e, where),
                                     message=f"calling {attr}() raised {type(e).__name__}: {e}"), hint=contract) from None
