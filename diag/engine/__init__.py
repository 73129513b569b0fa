"""The rule engine: from a loaded Trace to a ranked ``Diagnosis`` (``diag.diagnosis/1``).

Example:
  >>> from diag.engine import diagnose
  >>> from diag.trace import load_trace
  >>> diagnosis = diagnose(load_trace("run.jsonl"))          # doctest: +SKIP
  >>> diagnosis.top.id if diagnosis.top else "healthy"       # doctest: +SKIP
  'exploding_gradients'
"""

from diag.engine.diagnosis import (
    DIAGNOSIS_SCHEMA,
    CauseResult,
    Diagnosis,
    Justification,
    SymptomResult,
    diagnosis_json_schema,
)
from diag.engine.api import builtin_knowledge_base, diagnose

__all__ = [
    "DIAGNOSIS_SCHEMA", "CauseResult", "Diagnosis", "Justification", "SymptomResult",
    "builtin_knowledge_base", "diagnose", "diagnosis_json_schema",
]
