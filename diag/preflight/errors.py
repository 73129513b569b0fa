"""A probe whose training step raised: the error as a finding (shape, dtype, label range, other)."""

from __future__ import annotations

import re

from diag.preflight.findings import Finding

_KINDS = (
    ("loss_output_mismatch", re.compile(r"target -?\d+ is out of bounds|out of bounds|index out of range", re.I),
     "A label is outside the range of the model's outputs: make the output layer as wide as the number of classes, or map labels to 0..C-1."),
    ("disconnected_parameters", re.compile(r"does not require grad", re.I),
     "Remove the .detach() / torch.no_grad() that cuts the output off the parameters."),
    ("shape_mismatch", re.compile(r"shape|size mismatch|mat1 and mat2|dimension|must match the size|incompatible", re.I),
     "Fix the layer sizes or the reshape named in the error; check the batch dimension."),
    ("dtype_mismatch", re.compile(r"dtype|scalar type|expected .*(long|float|int)|can't be cast|result type|not implemented for", re.I),
     "Cast at the boundary: class-index targets as integers (torch.long), regression and BCE targets as float."),
)


def error_finding(probe: str, exc: BaseException, during: str) -> Finding:
    """The exception a probe met, as the cause it most likely shows, with its message as evidence."""
    message = " ".join(str(exc).split())[:300] or type(exc).__name__
    for cause, pattern, fix in _KINDS:
        if pattern.search(message):
            return Finding(cause, 0.9, [f"{during} raised {type(exc).__name__}: {message}"], [fix], probe=probe)
    return Finding("probe_error", 0.9, [f"{during} raised {type(exc).__name__}: {message}"],
                   ["Run one training step by hand on the first batch and fix the error it raises."], probe=probe)
