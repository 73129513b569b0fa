"""MLflow file store runs (``mlruns/<experiment>/<run>/``): metrics, params and status.

Read through ``mlflow``'s own ``MlflowClient`` where mlflow (or ``mlflow-skinny``) is installed,
else from the file store's documented layout, which is small and stable:

* ``meta.yaml``: ``run_id``, ``run_name``, ``status`` (1 running, 2 scheduled, 3 finished,
  4 failed, 5 killed), ``experiment_id``;
* ``metrics/<key>``: one line per logged value, ``<timestamp ms> <value> <step>`` (a key with
  ``/`` is a sub-folder path);
* ``params/<key>``: the value as text.

MLflow 3 keeps the file store in maintenance mode behind ``MLFLOW_ALLOW_FILE_STORE=true``; reading
an existing store is what that switch is for, so it is set for the read when the caller has not.
"""

from __future__ import annotations

import os
from pathlib import Path

from diag.errors import DiagInputError, Problem

from diag.adapters.importers.scalars import ScalarLog, hparam_value, to_number

_STATUS = {3: "completed", 4: "crashed", 5: "killed", "FINISHED": "completed", "FAILED": "crashed",
           "KILLED": "killed"}


def read_meta(path: Path) -> dict:
    """A run's ``meta.yaml`` (empty when unreadable: the caller falls back to the folder name)."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return document if isinstance(document, dict) else {}


def read_mlflow_run(run_dir: str | Path, run: str, use_client: bool | None = None) -> ScalarLog:
    """One MLflow run folder as named series.

    Args:
      run_dir: ``mlruns/<experiment id>/<run id>``.
      run: the run's name for the trace header.
      use_client: True forces ``MlflowClient``, False the file layout; None picks the client when
        mlflow is installed.

    Raises:
      DiagInputError: the folder is not an MLflow run, or its metrics hold no values.
    """
    p = Path(run_dir)
    meta_path = p / "meta.yaml"
    if not meta_path.is_file() or not (p / "metrics").is_dir():
        raise DiagInputError(Problem(str(p), "not an MLflow run folder (expected meta.yaml and metrics/)"))
    meta = read_meta(meta_path)
    log = ScalarLog(source="mlflow", path=str(p), run=run)
    if use_client is None:
        try:
            import mlflow  # noqa: F401
            use_client = True
        except ImportError:
            use_client = False
    if use_client and not all((p / sub).is_dir() for sub in ("metrics", "params", "tags", "artifacts")):
        # MLflow's client refuses a run folder missing one of these (a store copied by a tool that
        # drops empty folders, such as git); the layout it documents is still all there.
        use_client = False
    if use_client:
        _read_with_client(p, meta, log)
    else:
        _read_layout(p, meta, log)
    if not log.series:
        raise DiagInputError(Problem(str(p / "metrics"), "the MLflow run logged no metric values"))
    return log


def _read_with_client(p: Path, meta: dict, log: ScalarLog) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    run_id = str(meta.get("run_id") or meta.get("run_uuid") or p.name)
    previous = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        client = MlflowClient(tracking_uri=p.parent.parent.resolve().as_uri())
        found = client.get_run(run_id)
        for key in sorted(found.data.metrics):
            for metric in client.get_metric_history(run_id, key):
                log.add(key, int(metric.step), float(metric.value))
        log.hparams = {k: hparam_value(v) for k, v in sorted(found.data.params.items())}
        log.status = _STATUS.get(found.info.status)
    except MlflowException as e:
        raise DiagInputError(Problem(str(p), f"MLflow could not read this run: {str(e).splitlines()[0]}")) from None
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = previous


def _read_layout(p: Path, meta: dict, log: ScalarLog) -> None:
    metrics = p / "metrics"
    for file in sorted(f for f in metrics.rglob("*") if f.is_file()):
        key = file.relative_to(metrics).as_posix()
        bad = 0
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            log.problems.append(Problem(str(file), f"cannot read: {e}", severity="warning"))
            continue
        for number, line in enumerate(lines, 1):
            parts = line.split()
            if not parts:
                continue
            value = to_number(parts[1]) if len(parts) >= 2 else None
            step = to_number(parts[2]) if len(parts) >= 3 else 0.0
            if value is None or step is None or step != step or step < 0 or not step.is_integer():
                bad += 1
                continue
            log.add(key, int(step), value)
        if bad:
            log.problems.append(Problem(str(file), f"{bad} lines are not '<timestamp> <value> <step>'; skipped",
                                        severity="warning"))
    params = p / "params"
    if params.is_dir():
        for file in sorted(f for f in params.rglob("*") if f.is_file()):
            try:
                log.hparams[file.relative_to(params).as_posix()] = hparam_value(file.read_text(encoding="utf-8").strip())
            except (OSError, UnicodeDecodeError):
                continue
    log.status = _STATUS.get(meta.get("status"))
