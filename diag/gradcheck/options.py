"""The settings of a finite-difference gradient check, declared once for every framework.

:func:`~diag.gradcheck.jax_check.check_gradients` (JAX) and
:func:`~diag.gradcheck.torch_check.check_torch` (PyTorch) promise the same check, so they take the
same keyword settings with the same defaults and the same validation; declaring them here keeps
the two from drifting apart. The functions spell them ``**options: Unpack[CheckOptions]``, which
type checkers and editors expand into the keywords below.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable, Mapping, TypedDict

from diag.errors import DiagInputError

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # typing_extensions comes with pydantic
    from typing_extensions import Unpack

__all__ = ["CheckOptions", "CheckSettings", "Unpack"]


class CheckOptions(TypedDict, total=False):
    """Keyword settings of a gradient check (every one optional).

    Attributes:
      directions: K, random unit directions: for all leaves together in the joint screen, and per
        leaf where the screen does not pass (default 32).
      dtype: ``"float64"`` (default; enabled only for the check) or ``"float32"``.
      step: finite-difference step along a unit direction (default by dtype).
      threshold: relative error above which a leaf fails (default by dtype: 1e-6 / 2e-2).
      seed: seed of the random directions (default 0).
      target: a name for the report (default: the function's name).
      localize: search for the responsible elements of failed leaves (default True).
    """

    directions: int
    dtype: str
    step: float | None
    threshold: float | None
    seed: int
    target: str | None
    localize: bool


@dataclasses.dataclass(frozen=True)
class CheckSettings:
    """:class:`CheckOptions` with their defaults filled in and checked."""

    directions: int = 32
    dtype: str = "float64"
    step: float | None = None
    threshold: float | None = None
    seed: int = 0
    target: str | None = None
    localize: bool = True

    @classmethod
    def of(cls, options: Mapping[str, Any], caller: str) -> CheckSettings:
        """The settings ``caller`` (a public function's name, for the error) was given as keywords."""
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            # The TypeError Python raises for a misspelt keyword, naming the ones it takes.
            raise TypeError(
                f"{caller}() got an unexpected keyword argument {unknown[0]!r}; "
                f"its settings are {', '.join(CheckOptions.__annotations__)}"
            )
        settings = cls(**options)
        if settings.directions < 1:
            raise DiagInputError(f"directions must be at least 1, got {settings.directions}")
        return settings

    def report_name(self, fn: Callable[..., Any]) -> str:
        """What the report calls the checked function: ``target`` when given, else its name."""
        return self.target or getattr(fn, "__name__", type(fn).__name__)
