"""``diagnose(trace)``: the public entry point from a loaded trace to a ranked ``Diagnosis``."""

from __future__ import annotations

from typing import Iterable

from diag.engine.diagnosis import Diagnosis, TraceInfo, built


def trace_info(trace) -> TraceInfo:
    """What the Diagnosis says about the trace it read."""
    header = trace.header
    return built(
        TraceInfo,
        path=str(trace.path),
        run_id=header.run_id if header else None,
        framework=header.framework if header else None,
        steps=trace.num_steps,
        first_step=int(trace.steps[0]) if trace.num_steps else None,
        last_step=trace.last_step,
        layers=len(trace.layer_names),
        series=trace.series_names(),
    )


def diagnose(trace, extra_rule_dirs: Iterable[str] = (), *, kb=None, use_env: bool = True) -> Diagnosis:
    """Diagnose a loaded trace with the built-in knowledge base plus ``extra_rule_dirs``.

    Args:
      trace: a ``diag.trace.Trace`` (from ``load_trace``).
      extra_rule_dirs: user rule folders, loaded after the built-in ones (``DIAG_RULES_PATH``
        is read too unless ``use_env=False``).
      kb: an already loaded ``KnowledgeBase`` (skips loading; for repeated calls such as the TUI).

    Returns:
      A ``Diagnosis``: ranked causes, suppressed and ruled-out causes, symptoms, rules run/skipped.

    Raises:
      diag.engine.yamlloc.RuleFileError: a rule file is broken (every problem, ``file:line:col``).

    Example:
      >>> from diag.trace import load_trace                        # doctest: +SKIP
      >>> diagnose(load_trace("run.jsonl")).top.id                 # doctest: +SKIP
      'lr_too_high'
    """
    from diag.engine.engine import forward_chain
    from diag.engine.kb import load_knowledge_base
    from diag.engine.scoring import build_diagnosis

    if kb is None:
        kb = _cached_kb(tuple(str(d) for d in extra_rule_dirs), use_env)
    run = forward_chain(trace, kb)
    return build_diagnosis(run, trace_info(trace))


_KB_CACHE: dict = {}


def builtin_knowledge_base(extra_rule_dirs: Iterable[str] = (), use_env: bool = True):
    """The knowledge base ``diagnose`` uses, loaded once per process and shared.

    The built-in rules parse once per process (``diagnose`` fills the same cache, so a caller
    such as the TUI that asks after a diagnosis pays no second parse); user folders, from
    ``extra_rule_dirs`` or ``DIAG_RULES_PATH``, are read again on every call because they may
    have been edited since.

    Args:
      extra_rule_dirs: user rule folders loaded after the built-in ones.
      use_env: also read the folders named in ``DIAG_RULES_PATH``.

    Returns:
      A ``diag.engine.kb.KnowledgeBase``: ``.causes`` maps cause ids to their catalog entries
      (title, severity, fix, ``spec.doc``), ``.rules`` lists the rules.

    Raises:
      diag.engine.yamlloc.RuleFileError: a rule file is broken (every problem, ``file:line:col``).

    Example:
      >>> kb = builtin_knowledge_base(use_env=False)
      >>> kb.causes["lr_too_high"].spec.category
      'convergence'
    """
    return _cached_kb(tuple(str(d) for d in extra_rule_dirs), use_env)


def _cached_kb(extra: tuple, use_env: bool):
    """The built-in KB parses once per process; user folders are re-read (they may be edited)."""
    import os

    from diag.engine.kb import RULES_PATH_ENV, load_knowledge_base

    if extra or (use_env and os.environ.get(RULES_PATH_ENV)):
        return load_knowledge_base(extra, use_env=use_env)
    if "builtin" not in _KB_CACHE:
        _KB_CACHE["builtin"] = load_knowledge_base((), use_env=False)
    return _KB_CACHE["builtin"]
