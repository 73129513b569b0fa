"""Property-based fuzzing of the trace reader, summary and diagnosis over mutated real traces.

Each case takes the first lines of a real recorded trace (``tests/traces/``), applies one to three
rounds of a mutation (byte flips, truncation, line duplication, type swaps, deep nesting, huge
numbers, odd unicode, a header of another schema version) and checks the property of
``tests/fuzz_traces.check``: nothing but ``DiagInputError`` is raised, outputs encode as UTF-8,
messages stay short, and every intact line survives. ``DIAG_FUZZ_EXAMPLES`` sets the number of
cases per mutation (the long run: ``benchmarks/fuzz_traces.py``).
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_traces import MUTATIONS, SOURCES, check, mutate, source_lines

EXAMPLES = int(os.environ.get("DIAG_FUZZ_EXAMPLES", "25"))


def builtin_kb():
    from diag.engine.api import builtin_knowledge_base

    return builtin_knowledge_base(use_env=False)  # parsed once per process


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(source=st.sampled_from(SOURCES), rng=st.randoms(use_true_random=False), rounds=st.integers(1, 3))
def test_a_mutated_real_trace_keeps_every_intact_line_and_raises_only_input_errors(
        tmp_path, mutation, source, rng: random.Random, rounds):
    original = source_lines(source)
    path = tmp_path / "mutated.jsonl"
    path.write_bytes(mutate(mutation, b"\n".join(original), rng, rounds))
    outcome = check(path, original, builtin_kb())
    assert not outcome.lost, f"intact lines {outcome.lost} were not read"


def test_every_mutation_changes_the_trace():
    """The harness itself: a mutation that returned its input would test nothing."""
    original = b"\n".join(source_lines("healthy"))
    for name in MUTATIONS:
        changed = sum(mutate(name, original, random.Random(seed)) != original for seed in range(20))
        assert changed >= 15, f"{name} left the trace unchanged in {20 - changed} of 20 seeds"
