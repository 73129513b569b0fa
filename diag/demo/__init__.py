"""``diag demo``: train a small real Flax model, optionally with a planted fault, and explain it.

Example:
  >>> from diag.demo import SCENARIOS
  >>> "healthy" in SCENARIOS and SCENARIOS["dead_relu"].expected_cause
  'dead_relu'
"""

from diag.demo.scenarios import SCENARIOS, Scenario

__all__ = ["SCENARIOS", "Scenario", "run_demo"]


def run_demo(name: str, out, *, steps: int | None = None, seed: int = 0, progress=None):
    """Train scenario ``name`` with the recorder on and write its trace to ``out``.

    Returns:
      The trace path.
    """
    from diag.demo.train import run_scenario  # imports jax and flax

    return run_scenario(SCENARIOS[name], out, steps=steps, seed=seed, progress=progress)
