"""Compositionality analysis: verdicts on planted models, hand-computed statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sc_interp as sc
from sc_interp import stats
from sc_interp.toy import planted_mlp, planted_tasks

TRAIN = sc.TrainConfig(epochs=15, lr=0.05, l0=1e-2, l0_mean=False, progress=False)
MASK = sc.MaskConfig(unit="neuron", targets=["0"])


def _run(shared: bool, **kw) -> sc.CompositionalityReport:
    a, b = planted_tasks(shared=shared)
    b.name = "B"
    return sc.test_compositionality(
        planted_mlp(shared=shared), a, b, mask=MASK, train=TRAIN, seeds=2, n_boot=200, **kw
    )


@pytest.fixture(scope="module")
def modular() -> sc.CompositionalityReport:
    return _run(False)


def test_planted_modular_model_is_compositional(modular) -> None:
    assert modular.verdict == {"A": "compositional", "B": "compositional"}
    trained = modular.summary[modular.summary["kind"] == "trained"]
    assert (trained["sub_delta_lo"] > 0).all() and (trained["abl_delta_hi"] < 0).all()
    control = modular.summary[modular.summary["kind"] == "random_init"]
    assert (control["verdict"] != "compositional").all()
    assert (modular.table[modular.table["kind"] == "trained"]["beats_random"]).all()
    overall = modular.overlap[
        (modular.overlap["site"] == "(all)") & (modular.overlap["pair"] == "A vs B")
    ]
    assert (overall[overall["kind"] == "trained"]["iou"] == 0).all()


def test_planted_shared_model_is_not_compositional() -> None:
    report = _run(True, controls=("random_subnetwork",))
    assert report.verdict == {"A": "not compositional", "B": "not compositional"}
    overall = report.overlap[
        (report.overlap["site"] == "(all)") & (report.overlap["pair"] == "A vs B")
    ]
    assert (overall["iou"] == 1).all()


def test_several_base_models_use_cluster_bootstrap() -> None:
    a, b = planted_tasks()
    b.name = "B"
    report = sc.test_compositionality(
        [planted_mlp(), planted_mlp(scale=3.0)],
        a,
        b,
        mask=MASK,
        train=TRAIN,
        seeds=1,
        controls=(),
        n_boot=100,
    )
    assert set(report.table["model"]) == {0, 1}
    assert (report.summary["n_models"] == 2).all()
    assert report.verdict["A"] == "inconclusive"  # no random-subnetwork control run: cannot beat it


def test_report_save_writes_self_contained_files(modular, tmp_path) -> None:
    path = modular.save(tmp_path / "rep")
    text = path.read_text()
    assert "compositional" in text and "![report](report.png)" in text
    for name in ("table.csv", "summary.csv", "overlap.csv", "report.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 100
    assert "CompositionalityReport" in repr(modular)


def test_bad_controls_and_names() -> None:
    a, b = planted_tasks()
    with pytest.raises(sc.ConfigError, match="allowed"):
        sc.test_compositionality(planted_mlp(), a, b, controls=("nope",))
    with pytest.raises(sc.ConfigError, match="different names"):
        sc.test_compositionality(planted_mlp(), a, a)


def test_iou_over_union_of_all_units() -> None:
    a = {"l0": torch.tensor([1, 1, 0, 0]).bool(), "l1": torch.tensor([1, 0]).bool()}
    b = {"l0": torch.tensor([0, 1, 1, 0]).bool(), "l1": torch.tensor([1, 1]).bool()}
    # totals: intersection 2 (l0[1], l1[0]); union 5 -> 0.4; the per-layer mean would be (1/3 + 1/2) / 2
    assert stats.iou(a, b) == pytest.approx(0.4)
    assert stats.per_site_iou(a, b) == {"l0": pytest.approx(1 / 3), "l1": 0.5}
    assert stats.iou(a, {"l0": a["l0"]}) == pytest.approx(2 / 3)  # missing site = all off


def test_deltas_floor_at_chance() -> None:
    assert stats.delta(0.9, 0.1, chance=0.25) == pytest.approx(0.65)
    assert stats.delta(0.1, 0.2, chance=0.25) == 0.0
    assert stats.floored_accuracy(np.array([0, 0, 0, 1.0]), 0.5) == 0.5


def test_bootstrap_reproducible_and_sensible() -> None:
    clusters = {0: [0.5, 0.6], 1: [0.4], 2: [0.7, 0.8, 0.9]}
    one = stats.cluster_bootstrap(clusters, 500, seed=3)
    assert np.array_equal(one, stats.cluster_bootstrap(clusters, 500, seed=3))
    assert not np.array_equal(one, stats.cluster_bootstrap(clusters, 500, seed=4))
    lo, hi = stats.bootstrap_ci(one)
    assert 0.4 <= lo < np.mean([0.55, 0.4, 0.8]) < hi <= 0.8
    rows = [(np.ones(50), np.zeros(50))]
    draws = stats.example_bootstrap(rows, chance=0.25, n_boot=50, seed=0)
    assert np.allclose(draws, 0.75)  # 1.0 - floored 0.25, no variance


@pytest.mark.parametrize(
    ("sub", "abl", "beats", "expected"),
    [
        ((0.2, 0.4), (-0.4, -0.2), True, "compositional"),
        ((0.2, 0.4), (-0.4, -0.2), False, "inconclusive"),
        ((-0.05, 0.08), (-0.09, 0.02), True, "not compositional"),
        ((-0.4, -0.2), (-0.4, -0.2), True, "not compositional"),
        ((0.05, 0.4), (-0.3, 0.05), True, "inconclusive"),
    ],
)
def test_verdict_rule(sub, abl, beats, expected) -> None:
    assert stats.verdict(sub, abl, beats) == expected


def test_mean_ablation_method_runs_end_to_end() -> None:
    a, b = planted_tasks()
    report = sc.test_compositionality(
        planted_mlp(),
        a,
        b,
        mask=MASK,
        train=TRAIN,
        seeds=1,
        controls=("random_subnetwork",),
        method="mean",
        n_boot=100,
    )
    assert report.verdict == {"A": "compositional", "B": "compositional"}


def test_not_collected_by_pytest() -> None:
    assert sc.test_compositionality.__test__ is False  # type: ignore[attr-defined]


def test_masks_that_fail_their_own_subtask_are_flagged(caplog) -> None:
    a, b = planted_tasks()
    too_sparse = sc.TrainConfig(
        epochs=5, lr=0.05, l0=10.0, l0_mean=False, progress=False
    )  # everything pruned
    with caplog.at_level("WARNING", logger="sc_interp.analysis"):
        report = sc.test_compositionality(
            planted_mlp(), a, b, mask=MASK, train=too_sparse, seeds=1, controls=(), n_boot=50
        )
    assert not report.table["solves_target"].any()
    assert "mask training failed" in caplog.text
    assert "do not solve their own subtask" in report.to_markdown()
    assert report.verdict == {"A": "not compositional", "B": "not compositional"}


def test_successful_masks_solve_their_subtask(modular) -> None:
    trained = modular.table[modular.table["kind"] == "trained"]
    assert trained["solves_target"].all()
    assert "do not solve" not in modular.to_markdown()
