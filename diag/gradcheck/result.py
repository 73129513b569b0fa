"""What a gradient check found: one result per parameter leaf, gathered in a report.

Plain dataclasses over Python and numpy values, shared by the JAX and torch checks, so the
records, the CLI and the tests never import a framework to read a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LeafResult:
    """The check of one parameter leaf (one tensor of one layer).

    Attributes:
      name: the leaf's path, e.g. ``"layers/0/kernel"``; its layer is everything before the last
        ``/`` (see :attr:`layer`).
      check: ``"gradient"`` (finite differences) or ``"custom_vjp"`` (custom VJP vs autodiff of
        its primal).
      shape: the leaf's shape.
      error: relative error, ``||analytic - numeric|| / (||analytic|| + ||numeric||)`` over the
        directions used (0 when both vanish below the finite-difference noise floor). A leaf
        cleared by the JAX check's joint screen carries the joint error of all screened leaves
        (about the RMS of their own errors; ``method`` says so); any other leaf, its own.
      threshold: the error above which the leaf fails, chosen for the dtype the function computed in.
      passed: ``error <= threshold``.
      dtype: the dtype the function computed in (``"float64"``, ``"float32"``).
      directions: how many random directions were compared.
      worst_direction: index of the direction with the largest error.
      worst_elements: multi-indices of the elements most responsible, confirmed one by one by a
        coordinate finite difference (failed leaves only; empty when the error is spread thin).
      nonsmooth_directions: directions where the central difference crossed a kink (ReLU, max,
        abs) and a one-sided difference was used instead.
      method: how the numbers were obtained, e.g. ``"jax.jit(vmap) 4-point"``.
      message: one sentence for a person.
    """

    name: str
    check: str
    shape: tuple[int, ...]
    error: float
    threshold: float
    passed: bool
    dtype: str
    directions: int
    worst_direction: int | None = None
    worst_elements: list[list[int]] = field(default_factory=list)
    nonsmooth_directions: int = 0
    method: str = ""
    message: str = ""

    @property
    def layer(self) -> str:
        """The layer that owns this leaf: the path without its last component."""
        return self.name.rsplit("/", 1)[0] if "/" in self.name else self.name

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n


@dataclass
class GradCheckReport:
    """All leaf results of one check, with what was checked and how.

    Attributes:
      target: what was checked (a function name or ``module:function``).
      framework: ``"jax"`` or ``"torch"``.
      results: one :class:`LeafResult` per leaf and check, in the function's parameter order.
      notes: things a user should know (a float32 fallback, a custom VJP that could not be compared).
      seconds: wall-clock time of the check, compilation included.
    """

    target: str
    framework: str
    results: list[LeafResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[LeafResult]:
        return [r for r in self.results if not r.passed]

    def by_name(self, name: str, check: str = "gradient") -> LeafResult:
        """The result for one leaf (``check`` picks ``"gradient"`` or ``"custom_vjp"``)."""
        for r in self.results:
            if r.name == name and r.check == check:
                return r
        raise KeyError(f"no {check} result for {name!r}; leaves: {[r.name for r in self.results]}")

    def format(self) -> str:
        """A table a person reads: one line per leaf, failures marked, then the notes."""
        lines = [f"gradient check of {self.target} ({self.framework})"]
        width = max([len(r.name) for r in self.results] + [4])
        for r in self.results:
            mark = "ok  " if r.passed else "FAIL"
            line = (
                f"  {mark} {r.check:<10} {r.name:<{width}} error {r.error:.1e} "
                f"(threshold {r.threshold:.0e}, {r.dtype}, {r.directions} directions)"
            )
            if r.worst_elements:
                shown = ", ".join(str(tuple(e)) for e in r.worst_elements[:3])
                line += f"  worst elements {shown}"
            lines.append(line)
            if not r.passed and r.message:
                lines.append(f"       {r.message}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        verdict = "all gradients agree" if self.passed else f"{len(self.failures)} check(s) failed"
        timing = f" in {self.seconds:.2f} s" if self.seconds is not None else ""
        lines.append(f"{verdict}{timing}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()
