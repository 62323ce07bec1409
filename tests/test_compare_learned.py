"""A really learned mask against the planted circuit, through sc.compare and the CLI."""

from __future__ import annotations

import json

import pytest
from conftest import needs_tl4
from typer.testing import CliRunner

import sc_interp as sc
from sc_interp.cli import app
from sc_interp.toy import planted_bridge


@needs_tl4
@pytest.mark.parametrize(
    ("unit", "planted"), [("head", ["a0.h0"]), ("neuron", [f"m0.n{i}" for i in range(8)])]
)
def test_learned_mask_matches_planted_circuit(unit, planted, tmp_path) -> None:
    model, task_a, _ = planted_bridge()
    sub = sc.train_masks(
        model,
        sc.MaskConfig(unit=unit),
        task_a,
        sc.TrainConfig(epochs=12, lr=0.05, l0=1e-2, l0_mean=False, progress=False),
    )
    circuit = sc.circuits.load(planted)
    table = sc.compare(sub, circuit, model=model)
    overall = table[table["layer"] == "all"].iloc[0]
    assert overall["iou"] >= 0.9
    assert overall["auroc"] >= 0.95
    path = sub.save(tmp_path / "sub.safetensors")
    (tmp_path / "circuit.json").write_text(json.dumps(planted))
    result = CliRunner().invoke(app, ["compare", str(path), str(tmp_path / "circuit.json")])
    assert result.exit_code == 0, result.output
    assert "iou" in result.output and "auroc" in result.output
