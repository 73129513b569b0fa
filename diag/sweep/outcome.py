"""One run's row in a sweep: what ``diagnose_path`` concluded, plus the facts a fleet is compared on.

``diagnose_run`` is the function the sweep maps over runs, in a local process pool or on Dask
workers. It never raises: a run that cannot be read becomes a row with status ``unreadable``
and the reason, so one broken file never stops a sweep of thousands.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from diag.sweep.discover import RunRef

Status = Literal["healthy", "likely", "possible", "weak", "unreadable"]
HyperValue = Union[bool, int, float, str, None]

# Header fields compared between failed and healthy runs, in the order they are listed.
_HEADER_SETTINGS = ("framework", "framework_version", "model_name", "param_count", "param_dtype", "compute_dtype",
                    "loss_scaling", "task", "loss_kind", "batch_size", "steps_planned", "seed", "device_platform",
                    "device_count", "world_size")
_LR_NAMES = ("learning_rate", "lr")


class RunOutcome(BaseModel):
    """A run's row: its status, top cause and the settings it was trained with.

    Attributes:
      path: the run's path as discovered (under the sweep's root, as the user wrote it), with
        ``#name`` when one foreign log file holds several runs.
      kind: ``trace``, ``shards``, ``foreign`` or ``unlistable``.
      status: the top cause's certainty bucket (``likely``, ``possible``, ``weak``), ``healthy``
        when no cause was found, ``unreadable`` when the run could not be read (see ``reason``).
      hyperparameters: the header's settings (``lr``, ``batch_size``, ``optimizer``, ``param_dtype``,
        optimizer hyper-parameters, ``tag.<name>`` for user tags), compared across the fleet.
    """

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    path: str
    kind: str = "trace"
    status: Status
    top_cause: Optional[str] = None
    certainty: Optional[float] = None
    title: Optional[str] = None
    severity: Optional[str] = None
    causes: list[str] = Field(default_factory=list, description="Every ranked cause id, most likely first.")
    steps: Optional[int] = None
    last_step: Optional[int] = None
    final_loss: Optional[float] = Field(default=None, description="The loss at the last step that recorded one.")
    run_id: Optional[str] = None
    skipped_records: int = Field(default=0, description="Bad records skipped while reading (the rest was read).")
    reason: Optional[str] = Field(default=None, description="Why an unreadable run could not be read.")
    hyperparameters: dict[str, HyperValue] = Field(default_factory=dict)
    # True for a row made because a worker was lost: says nothing about the run, so never cached
    _transient: bool = PrivateAttr(default=False)


def diagnose_run(run: RunRef, rule_dirs: tuple[str, ...] = ()) -> RunOutcome:
    """Diagnose one discovered run into its row; never raises.

    Args:
      run: a run from ``discover_runs``.
      rule_dirs: user rule folders (already resolved: ``DIAG_RULES_PATH`` is not read here, so a
        Dask worker with another environment diagnoses with the same rules as the client).

    Returns:
      A ``RunOutcome``; ``status == "unreadable"`` with ``reason`` when the run could not be read.
    """
    from diag.api import diagnose_path
    from diag.errors import DiagInputError

    if run.kind == "unlistable":
        return RunOutcome(path=run.label, kind=run.kind, status="unreadable", reason=run.reason)
    loaded = []
    try:
        diagnosis = diagnose_path(run.path, kb=_knowledge_base(tuple(rule_dirs)), use_env=False, run=run.run,
                                  foreign=run.kind == "foreign", on_load=loaded.append)
    except DiagInputError as e:
        return RunOutcome(path=run.label, kind=run.kind, status="unreadable", reason=_reason(e))
    except Exception as e:  # noqa: BLE001 - one run's failure is that run's row, never the sweep's end
        return RunOutcome(path=run.label, kind=run.kind, status="unreadable",
                          reason=f"diag failed on this run ({type(e).__name__}: {e}); please report it")
    trace = loaded[0]
    top = diagnosis.top
    return RunOutcome(
        path=run.label, kind=run.kind,
        status=top.bucket if top is not None and top.bucket else "healthy",
        top_cause=top.id if top else None,
        certainty=round(top.certainty, 4) if top else None,
        title=top.title if top else None,
        severity=top.severity if top else None,
        causes=[c.id for c in diagnosis.causes],
        steps=trace.num_steps, last_step=trace.last_step,
        final_loss=_final_loss(trace),
        run_id=trace.header.run_id if trace.header else None,
        skipped_records=sum(1 for p in trace.problems if p.severity == "error"),
        hyperparameters=hyperparameters(trace),
    )


def _reason(error) -> str:
    problem = error.problem
    where = f"line {problem.line}: " if problem.line else ""
    field = f"{problem.field}: " if problem.field else ""
    return f"{where}{field}{problem.message}"


def _final_loss(trace) -> float | None:
    if not trace.has("loss"):
        return None
    return float(trace.series("loss").values[-1])  # NaN/Inf are a run's real ending: kept


def hyperparameters(trace) -> dict[str, HyperValue]:
    """The settings a run was trained with, flat: header fields, optimizer, its hyper-parameters, tags.

    The learning rate is ``lr`` whatever the framework called it; a header without one falls back
    to the first recorded ``lr`` of the step records.
    """
    header = trace.header
    found: dict[str, HyperValue] = {}
    if header is not None:
        for name in _HEADER_SETTINGS:
            value = getattr(header, name, None)
            if value is not None:
                found[name] = value
        if header.optimizer is not None:
            found["optimizer"] = header.optimizer.name
            for name, value in sorted(header.optimizer.hyperparameters.items()):
                found["lr" if name in _LR_NAMES else name] = value
        for name, value in sorted(header.tags.items()):
            found[f"tag.{name}"] = value
    if "lr" not in found and trace.has("lr"):
        found["lr"] = float(trace.series("lr").values[0])
    return found


_KB_BY_DIRS: dict = {}


def _knowledge_base(rule_dirs: tuple[str, ...]):
    """One knowledge base per process and set of rule folders (user folders parse once per sweep)."""
    if rule_dirs not in _KB_BY_DIRS:
        from diag.engine.kb import load_knowledge_base

        _KB_BY_DIRS[rule_dirs] = load_knowledge_base(rule_dirs, use_env=False)
    return _KB_BY_DIRS[rule_dirs]


__all__ = ["RunOutcome", "Status", "diagnose_run", "hyperparameters"]
