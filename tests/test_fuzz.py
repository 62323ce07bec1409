"""Fuzzing the public API (tests/fuzz_harness.py): only ScInterpError (or the user's own
exceptions) escape, and a failure leaves the model exactly as it was.

The default profile runs a few dozen cases per entry point; ``SC_FUZZ=long`` (CI) many more.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import HAS_NNSIGHT, TL_MAJOR
from fuzz_harness import cases, make_model, run_case
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

LONG = os.environ.get("SC_FUZZ") == "long"
KINDS = ["torch"] + (["bridge"] if TL_MAJOR >= 4 else []) + (["nnsight"] if HAS_NNSIGHT else [])
ENTRY_POINTS = [name for name, _ in cases("torch", lambda pool: pool[0], Path("."))]
MODELS: dict[str, object] = {}


def _model(kind: str) -> object:
    if kind not in MODELS:
        MODELS[kind] = make_model(kind)
    return MODELS[kind]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
@settings(
    max_examples=120 if LONG else 12,
    deadline=None,
    derandomize=not LONG,
    # no shrinking: each example runs a model, and a failing entry point could shrink for many
    # minutes; the failure message already names the case
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_only_our_errors_escape_and_nothing_leaks(kind: str, entry: str, data, tmp_path) -> None:
    def pick(pool: list) -> object:
        return data.draw(st.sampled_from(pool))

    call = dict(cases(kind, pick, tmp_path))[entry]
    model = _model(kind)
    outcome = run_case(model, lambda: call(model))
    assert outcome.kind in ("ok", "clean error"), (
        f"{entry} on {kind}: {outcome.kind}: {outcome.detail}"
    )
