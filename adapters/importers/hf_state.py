"""Hugging Face ``trainer_state.json`` (``TrainerState.save_to_json``): its ``log_history``.

Each entry of ``log_history`` is one ``Trainer.log`` call: training entries hold ``loss``,
``grad_norm``, ``learning_rate``, ``epoch`` and ``step``; evaluation entries ``eval_loss``,
``eval_<metric>``; the last entry of a finished run is a summary (``train_runtime``,
``train_loss`` = the mean loss over the whole run), which is not a measurement of any one step and
is kept out of the series.
"""

from __future__ import annotations

import json
from pathlib import Path

from diag.errors import DiagInputError, Problem

from diag.adapters.importers.scalars import ScalarLog, hparam_value, to_number

_STATE_FACTS = ("max_steps", "num_train_epochs", "train_batch_size", "logging_steps", "eval_steps",
                "global_step", "best_metric")


def read_trainer_state(path: str | Path, run: str) -> ScalarLog:
    """A trainer state file (or a checkpoint folder holding one) as named series.

    Raises:
      DiagInputError: unreadable, not JSON, or a JSON document that is not a trainer state.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "trainer_state.json"
    try:
        document = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise DiagInputError(Problem(str(p), f"cannot read: {e.strerror or e}")) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DiagInputError(Problem(str(p), f"not JSON: {e}")) from None
    history = document.get("log_history") if isinstance(document, dict) else None
    if not isinstance(history, list):
        raise DiagInputError(Problem(str(p), "not a Hugging Face trainer state: no 'log_history' list"),
                             hint="pass the trainer_state.json a Trainer saves in each checkpoint-N folder")
    # "transformers", not "torch": the Trainer runs the loop (zero_grad included), so rules about
    # hand-written PyTorch loops do not apply.
    log = ScalarLog(source="huggingface", path=str(p), run=run, framework="transformers")
    for key in _STATE_FACTS:
        if key in document:
            log.hparams[key] = hparam_value(document[key])
    skipped = 0
    for number, entry in enumerate(history):
        if not isinstance(entry, dict):
            skipped += 1
            continue
        if "train_runtime" in entry:
            for key, value in entry.items():
                if key not in ("step", "epoch"):
                    log.hparams[f"summary.{key}"] = hparam_value(value)
            continue
        step = entry.get("step")
        if type(step) is not int or step < 0:
            skipped += 1
            continue
        for key, value in entry.items():
            if key == "step":
                continue
            number_value = to_number(value)
            if number_value is not None:
                log.add(key, step, number_value)
    if skipped:
        log.problems.append(Problem(str(p), f"{skipped} log_history entries without a step were skipped",
                                    field="log_history", severity="warning"))
    if not log.series:
        raise DiagInputError(Problem(str(p), "the trainer state's log_history holds no logged values"),
                             hint="the Trainer logs every logging_steps steps; a run stopped before the first "
                             "log has nothing to explain")
    return log
