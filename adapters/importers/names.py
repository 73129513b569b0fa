"""Metric names of foreign logs -> trace fields, from ``names.yaml`` plus the user's own patterns.

Example:
  >>> names = NameMap.load(extra=["my_loss=loss"])
  >>> names.field_for("my_loss"), names.field_for("val_acc"), names.field_for("val_f1")
  ('loss', 'eval.val.metrics.accuracy', 'eval.val.metrics.f1')
  >>> names.field_for("hp_metric") is None
  True
  >>> names.field_for("grad_norm/encoder.fc1")      # a per-layer tag: the layer's name is kept as is
  'layers.grad_norm.encoder.fc1'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable

import yaml

from diag.errors import DiagInputError, Problem

IGNORE = "ignore"
# Step fields an importer may fill directly; everything else a log holds goes to metrics.* or eval.*.
STEP_FIELDS = ("loss", "lr", "grad_norm", "update_norm", "param_norm", "loss_scale", "epoch", "step_time",
               "memory_bytes")
# Per-layer statistics an importer may fill (``layers.STAT.LAYER``): the trace's LayerStats norms.
LAYER_STATS = ("grad_norm", "param_norm", "update_norm", "update_ratio")
_SANITIZE = re.compile(r"[^A-Za-z0-9_\-]+")
_SPLIT = re.compile(r"^[A-Za-z0-9_\-]+$")


def clean_name(text: str) -> str:
    """A metric or split name the trace's series names can hold (no dots, slashes or spaces)."""
    return _SANITIZE.sub("_", text).strip("_") or "value"


def check_field(target: str) -> str | None:
    """Why ``target`` is not a field a name can map to (None when it is one)."""
    if target == IGNORE or target in STEP_FIELDS:
        return None
    if target.startswith("layers."):
        _, stat, layer = (target.split(".", 2) + ["", ""])[:3]
        if stat in LAYER_STATS and layer.strip():
            return None
    parts = target.split(".")
    if parts[0] == "metrics" and len(parts) == 2 and parts[1]:
        return None
    if parts[0] == "eval" and len(parts) >= 3 and _SPLIT.match(parts[1]):
        if parts[2:] == ["loss"] or (len(parts) == 4 and parts[2] == "metrics" and parts[3]):
            return None
    return (f"unknown field {target!r}; expected one of {', '.join(STEP_FIELDS)}, metrics.NAME, "
            "eval.SPLIT.loss, eval.SPLIT.metrics.NAME, layers.STAT.LAYER (STAT: "
            f"{', '.join(LAYER_STATS)}) or ignore")


@dataclass
class _Pattern:
    text: str
    regex: re.Pattern
    target: str
    origin: str


@dataclass
class NameMap:
    """Ordered name patterns; ``field_for`` gives the first match's field (None: ignore)."""

    patterns: list[_Pattern] = field(default_factory=list)
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, extra: Iterable[str] = (), files: Iterable[str | Path] = ()) -> "NameMap":
        """The built-in ``names.yaml`` behind the user's ``--map NAME=FIELD`` entries and files.

        Args:
          extra: ``NAME=FIELD`` strings (``--map``); they win over files and the built-in names.
          files: YAML files like ``names.yaml`` (a ``names:`` mapping), in the order given.

        Raises:
          DiagInputError: an entry or file is malformed (the message names it).
        """
        names = cls()
        for entry in extra:
            pattern, sep, target = entry.partition("=")
            if not sep or not pattern.strip() or not target.strip():
                raise DiagInputError(Problem("--map", f"{entry!r} is not NAME=FIELD"),
                                     hint="e.g. --map 'Loss/train_step=loss' --map 'acc/val=eval.val.metrics.accuracy'")
            names._add(pattern.strip(), target.strip(), "--map")
        for path in files:
            names._add_file(Path(path))
        text = resources.files("diag.adapters.importers").joinpath("names.yaml").read_text(encoding="utf-8")
        names._add_mapping(yaml.safe_load(text), "names.yaml (built in)")
        return names

    def _add_file(self, path: Path) -> None:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise DiagInputError(Problem(str(path), f"cannot read: {e.strerror or e}")) from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise DiagInputError(Problem(str(path), f"not YAML: {getattr(e, 'problem', e)}",
                                         line=mark.line + 1 if mark else None)) from None
        self._add_mapping(document, str(path))

    def _add_mapping(self, document, origin: str) -> None:
        mapping = document.get("names") if isinstance(document, dict) else None
        if not isinstance(mapping, dict):
            raise DiagInputError(Problem(origin, "expected a mapping 'names:' of metric name -> field"),
                                 hint="e.g.\nnames:\n  Loss/train: loss\n  Accuracy/val: eval.val.metrics.accuracy")
        for pattern, target in mapping.items():
            if not isinstance(target, str):
                raise DiagInputError(Problem(origin, f"the field for {pattern!r} must be a string, got {target!r}"))
            self._add(str(pattern), target, origin)

    def _add(self, pattern: str, target: str, origin: str) -> None:
        reason = check_field(target.replace("{1}", "x"))
        if reason:
            raise DiagInputError(Problem(origin, f"{pattern}: {reason}"))
        regex = "".join("(.*)" if ch == "*" else re.escape(ch) for ch in pattern)
        self.patterns.append(_Pattern(pattern, re.compile(regex, re.IGNORECASE | re.DOTALL), target, origin))
        self._cache.clear()

    def field_for(self, name: str) -> str | None:
        """The trace field a log's metric ``name`` goes to, or None when it is ignored."""
        if name not in self._cache:
            self._cache[name] = self._resolve(name)
        return self._cache[name][0]

    def rank(self, name: str) -> int:
        """Index of the pattern that matched ``name`` (lower is more specific: it wins a clash)."""
        self.field_for(name)
        return self._cache[name][1]

    def _resolve(self, name: str) -> tuple[str | None, int]:
        for index, pattern in enumerate(self.patterns):
            match = pattern.regex.fullmatch(name)
            if match is None:
                continue
            target = pattern.target
            if "{1}" in target:
                captured = match.group(1) if match.groups() else name
                # A layer's name stays as the log wrote it ('encoder.fc1'): the trace's header lists it.
                fill = captured.strip() if target.startswith("layers.") else clean_name(captured)
                target = target.replace("{1}", fill or "value")
            return (None if target == IGNORE else target), index
        return f"metrics.{clean_name(name)}", len(self.patterns)
