"""The scenario list: load ``scenarios.yaml``, merge defaults, validate, select.

One YAML entry is one scenario::

    - id: lr_too_high/mlp-blobs-sgd          # unique; "<expected cause>/<short description>"
      expect: lr_too_high                    # a cause id of shared/CAUSES.md, or "healthy"
      framework: flax                        # flax (default) or torch
      model: {kind: mlp, widths: [64, 64]}
      data: {kind: blobs, n_train: 2048, classes: 4}
      train: {optimizer: sgd, lr: 3.0}
      fault: {magnitude: "SGD lr 3.0 (healthy: 0.1)"}   # plus knobs the trainers read
      steps: 200
      seed: 0
      ci: true                               # part of the fast subset run as a test

Example:
  >>> scs = load(DEFAULT_PATH)
  >>> all("id" in s and "expect" in s for s in scs)
  True
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent.parent
DEFAULT_PATH = HERE / "scenarios.yaml"
SECTIONS = ("model", "data", "train", "fault")
KEYS = {"id", "expect", "framework", "steps", "seed", "every", "eval_every", "eval_examples", "ci", "notes", "style",
        *SECTIONS}


class SpecError(ValueError):
    """A scenario entry is malformed (the message names the entry and the field)."""


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load(path: str | Path = DEFAULT_PATH) -> list[dict]:
    """All scenarios of ``path`` with ``defaults`` merged in, validated.

    Raises:
      SpecError: an unknown key, a missing field, a duplicate id.
    """
    doc = yaml.safe_load(Path(path).read_text())
    defaults = doc.get("defaults", {})
    out, seen = [], set()
    for i, entry in enumerate(doc.get("scenarios", [])):
        where = f"{path}: scenario #{i + 1} ({entry.get('id', '?')})"
        unknown = set(entry) - KEYS
        if unknown:
            raise SpecError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(KEYS)}")
        for need in ("id", "expect", "model", "data"):
            if need not in entry:
                raise SpecError(f"{where}: missing field {need!r}")
        if entry["id"] in seen:
            raise SpecError(f"{where}: duplicate id")
        seen.add(entry["id"])
        sc = _merge(defaults, entry)
        for s in SECTIONS:
            sc.setdefault(s, {})
        if sc.get("framework", "flax") not in ("flax", "torch"):
            raise SpecError(f"{where}: framework must be flax or torch, got {sc['framework']!r}")
        out.append(sc)
    return out


def select(scenarios: list[dict], only: str | None = None, subset: str | None = None) -> list[dict]:
    """Scenarios whose id or expected cause matches ``only`` (glob or substring), in ``subset``."""
    chosen = scenarios
    if subset == "ci":
        chosen = [s for s in chosen if s.get("ci")]
    elif subset not in (None, "all", "full"):
        raise SpecError(f"unknown subset {subset!r}; use 'ci' or 'all'")
    if only:
        pats = [p.strip() for p in only.split(",") if p.strip()]
        chosen = [s for s in chosen if any(fnmatch.fnmatch(s["id"], p) or p in s["id"] or p == s["expect"]
                                          for p in pats)]
    return chosen


# Bump when a change to the training code changes what a scenario records (invalidates kept traces).
TRAINING_VERSION = 1


def cache_key(sc: dict) -> str:
    """Changes when the scenario entry or TRAINING_VERSION changes (``--reuse`` of kept traces)."""
    h = hashlib.sha1(json.dumps([TRAINING_VERSION, sc], sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def trace_name(sc: dict) -> str:
    return sc["id"].replace("/", "__") + ".jsonl"
