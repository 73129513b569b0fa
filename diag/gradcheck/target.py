"""Load the function a user asks ``diag gradcheck`` to check, and decide how to check it.

The contract (also in ``diag gradcheck --help`` and the README): ``TARGET`` is
``package.module:function`` or ``path/to/file.py:function``, naming a function that takes no
arguments and returns ``(fn, args)``:

* JAX: ``fn(*args)`` returns a scalar or arrays; the gradient with respect to ``args[0]``
  (a pytree of parameters) is checked.
* Flax NNX: ``args[0]`` is an ``nnx.Module``; ``fn(model, *args[1:])`` is its loss; every
  ``nnx.Param`` is checked.
* PyTorch: ``args`` hold tensors (``args[0]`` a tensor or dict of tensors) or ``args[0]`` is an
  ``nn.Module`` with ``fn(module, *args[1:])`` its loss.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from diag.errors import DiagInputError, Problem

CONTRACT = (
    "TARGET must name a function that takes no arguments and returns (fn, args), "
    "e.g. examples/gradcheck_target.py:target or mypkg.checks:dense_layer"
)


def load_target(spec: str) -> tuple[Callable[..., Any], tuple, str]:
    """Import ``spec`` (``module:function`` or ``file.py:function``), call it, validate the result.

    Returns:
      ``(fn, args, name)``.

    Raises:
      DiagInputError: the target cannot be imported, is not callable, or breaks the contract.
    """
    if ":" not in spec:
        raise DiagInputError(Problem(path=spec, message="missing ':function' after the module or file"), hint=CONTRACT)
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise DiagInputError(Problem(path=spec, message="expected MODULE:FUNCTION or FILE.py:FUNCTION"), hint=CONTRACT)
    module = _import(where)
    factory = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            available = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise DiagInputError(
                Problem(path=where, message=f"has no attribute {attr!r}"),
                hint=f"callables there: {', '.join(available[:12]) or 'none'}; {CONTRACT}",
            )
        factory = getattr(factory, part)
    if not callable(factory):
        raise DiagInputError(Problem(path=spec, message=f"{attr!r} is not callable"), hint=CONTRACT)
    try:
        value = factory()
    except TypeError as e:  # it wants arguments: the contract is a function of none
        raise DiagInputError(Problem(path=where, message=f"calling {attr}() failed: {_one_line(e)}"),
                             hint=CONTRACT) from None
    except Exception as e:  # noqa: BLE001 - the user's code: any failure is a bad target, exit 2
        raise DiagInputError(Problem(path=where, message=f"{attr}() raised {_one_line(e)}"), hint=CONTRACT) from None
    if not (isinstance(value, tuple) and len(value) == 2 and callable(value[0])):
        got = type(value).__name__ if not isinstance(value, tuple) else f"a tuple of {len(value)}"
        raise DiagInputError(Problem(path=spec, message=f"{attr}() returned {got}, expected (fn, args)"), hint=CONTRACT)
    fn, args = value
    if not isinstance(args, (tuple, list)) or not args:
        raise DiagInputError(
            Problem(path=spec, message=f"{attr}() returned args of type {type(args).__name__}, expected a non-empty tuple"),
            hint=CONTRACT,
        )
    return fn, tuple(args), spec


def _import(where: str):
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise DiagInputError(Problem(path=where, message="no such file"), hint=CONTRACT)
        name = f"_diag_gradcheck_target_{abs(hash(str(path.resolve())))}"
        if name in sys.modules:  # loaded before in this process: reuse it, and its compiled checks
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise DiagInputError(Problem(path=where, message="is not a Python file"), hint=CONTRACT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        # The file's folder on the path, so it can import its neighbours as a script would.
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except BaseException as e:
            sys.modules.pop(name, None)
            if not isinstance(e, Exception):
                raise  # KeyboardInterrupt, SystemExit: not the target's fault
            line = e.lineno if isinstance(e, SyntaxError) else user_frame_line(e, where)
            raise DiagInputError(Problem(path=where, line=line, message=_import_failure(e)), hint=CONTRACT) from None
        return module
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`, find modules in the working folder
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as e:
        if e.name and where.startswith(e.name):
            raise DiagInputError(Problem(path=where, message=f"cannot import module {e.name!r}"), hint=CONTRACT) from None
        raise DiagInputError(Problem(path=where, message=_import_failure(e)), hint=CONTRACT) from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while importing
        raise DiagInputError(Problem(path=where, message=_import_failure(e)), hint=CONTRACT) from None


def user_frame_line(exc: BaseException, where: str) -> int | None:
    """The line of the deepest traceback frame in the user's file, if the error passed through it."""
    target = Path(where).resolve() if where.endswith(".py") else None
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if target is not None and Path(frame.filename).resolve() == target:
            line = frame.lineno
    return line


def _import_failure(error: Exception) -> str:
    """One line saying why importing the target failed (syntax error with its line, missing import)."""
    if isinstance(error, SyntaxError):
        where = f"line {error.lineno}: " if error.lineno else ""
        return f"syntax error, {where}{error.msg}"
    if isinstance(error, ModuleNotFoundError):
        return f"importing it failed: no module named {error.name!r}"
    return f"importing it raised {_one_line(error)}"


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def framework_of(fn: Callable[..., Any], args: tuple) -> str:
    """``"torch"``, ``"flax"`` or ``"jax"``, from the arguments' types (no framework imported to decide)."""
    first = args[0]
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(first, torch.nn.Module) or _holds(args, torch.Tensor):
            return "torch"
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(first, nnx.Module):
        return "flax"
    return "jax"


def _holds(tree, cls) -> bool:
    if isinstance(tree, cls):
        return True
    if isinstance(tree, dict):
        return any(_holds(v, cls) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return any(_holds(v, cls) for v in tree)
    return False
