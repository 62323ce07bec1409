"""Compositionality analysis: verdicts on planted models, hand-computed statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sc_interp as sc
from sc_interp import stats
from sc_interp.toy import planted_mlp, planted_tasks
from sc_interp.verdict import Evidence, decide

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


def test_several_base_models_use_t_intervals_over_model_means() -> None:
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
    assert (report.summary["interval"] == "t interval over 2 per-model means (1 df)").all()
    # no random-subnetwork control was run, so the learned masks cannot be shown to beat it
    assert report.verdict["A"] == "inconclusive"
    assert report.reasons["A"] == "the random-subnetwork control was not run"
    assert "uncontrolled" in report.to_markdown()


def test_entangled_planted_model_is_not_compositional() -> None:
    """Ablating A's units also breaks B (B keeps ~0.56): the old rule's CI-only test would
    pass the small abl_delta; the margin and CI rules must not."""
    a, b = planted_tasks()
    b.name = "B"
    report = sc.test_compositionality(
        planted_mlp(entangled=1 / 3), a, b, mask=MASK, train=TRAIN, seeds=2, n_boot=500,
        controls=("random_subnetwork",),
    )  # fmt: skip
    assert "compositional" != report.verdict["A"]
    assert "compositional" != report.verdict["B"]
    trained = report.table[report.table["subroutine"] == "A"]
    assert (trained["abl_other"] < 0.7).all()  # ablating A's mask really hurts B


def test_fewer_than_ten_random_subnetworks_is_a_config_error() -> None:
    a, b = planted_tasks()
    b.name = "B"
    with pytest.raises(sc.ConfigError, match="at least 10"):
        sc.test_compositionality(planted_mlp(), a, b, mask=MASK, n_random=2)
    with pytest.raises(sc.ConfigError, match="at least 10"):
        sc.test_compositionality(planted_mlp(), a, b, mask=MASK, n_random=0)


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


def test_deltas_floor_at_each_subtasks_own_chance() -> None:
    assert stats.delta(0.9, 0.1, chance=0.25) == pytest.approx(0.65)
    assert stats.delta(0.1, 0.2, chance=0.25) == 0.0
    assert stats.delta(0.9, 0.3, chance=0.25, chance_other=0.5) == pytest.approx(0.4)
    assert stats.floored_accuracy(np.array([0, 0, 0, 1.0]), 0.5) == 0.5


def test_other_subtask_is_floored_at_its_own_chance() -> None:
    a, b = planted_tasks()  # chance 0.5 both; give B a chance level of 0.25 instead
    b = sc.Subtask("B", b.train, b.test, chance=0.25, readout=b.readout)
    report = sc.test_compositionality(
        planted_mlp(), a, b, mask=MASK, train=TRAIN, seeds=1, controls=(), n_boot=50
    )
    row = report.table[report.table["subroutine"] == "A"].iloc[0]
    assert (row["chance_target"], row["chance_other"]) == (0.5, 0.25)
    expected = max(row["sub_target"], 0.5) - max(row["sub_other"], 0.25)
    assert row["sub_delta"] == pytest.approx(expected)


def test_single_model_bootstrap_is_exact_without_variance() -> None:
    arm = stats.Arm(np.ones((2, 50)), np.zeros((2, 50)), 0.25, 0.25)
    estimate, draws, method = stats.single_model_draws([arm], n_boot=50, seed=0)
    assert estimate == 0.75 and np.allclose(draws, 0.75)  # 1.0 - floored 0.25, no variance
    assert "shared by all seeds" in method


def test_t_interval_matches_the_textbook_formula() -> None:
    values = [0.1, 0.3, 0.2, 0.5]
    ci = stats.t_interval(values, greater=True)
    mean, sd = np.mean(values), np.std(values, ddof=1)
    half = 3.182446305284263 * sd / 2  # t(0.975, 3 df) from tables
    assert (ci.lo, ci.hi) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert ci.method == "t interval over 4 per-model means (3 df)"


def _interval(estimate: float, lo: float, hi: float) -> stats.Interval:
    return stats.Interval(estimate, lo, hi, 0.0, "")


GOOD_SUB, GOOD_ABL = _interval(0.4, 0.3, 0.5), _interval(-0.4, -0.5, -0.3)


@pytest.mark.parametrize(
    ("evidence", "expected", "reason"),
    [
        (Evidence(GOOD_SUB, GOOD_ABL, 3, 3, 0.4, 0.1, _interval(-0.3, -0.4, -0.2)),
         "compositional", "lower than the untrained control"),
        (Evidence(GOOD_SUB, GOOD_ABL, 3, 3, 0.4, 0.1), "compositional", "uncontrolled"),
        (Evidence(GOOD_SUB, GOOD_ABL, 3, 2, 0.4, 0.1), "inconclusive", "1 of 3 masks do not solve"),
        (Evidence(GOOD_SUB, GOOD_ABL, 3, 3), "inconclusive", "random-subnetwork control was not run"),
        (Evidence(GOOD_SUB, GOOD_ABL, 3, 3, 0.4, 0.5), "inconclusive", "does not beat"),
        (Evidence(GOOD_SUB, GOOD_ABL, 3, 3, 0.4, 0.1, _interval(-0.02, -0.1, 0.05)),
         "inconclusive", "untrained control shows the signature"),
        # the README's old scratch "subject" row: CIs exclude 0 but abl_delta is tiny
        (Evidence(GOOD_SUB, _interval(-0.052, -0.092, -0.006), 3, 3, 0.4, 0.1),
         "inconclusive", "abl_delta -0.052 is smaller in size than the 0.10 margin"),
        (Evidence(_interval(0.05, 0.01, 0.09), GOOD_ABL, 3, 3, 0.4, 0.1),
         "inconclusive", "sub_delta +0.050 is smaller than the 0.10 margin"),
        (Evidence(_interval(0.0, -0.05, 0.08), _interval(0.0, -0.09, 0.02), 3, 3, 0.4, 0.1),
         "not compositional", "within ±0.10"),
        (Evidence(_interval(-0.3, -0.4, -0.2), GOOD_ABL, 3, 3, 0.4, 0.1),
         "not compositional", "does the other subtask better"),
        (Evidence(GOOD_SUB, _interval(0.3, 0.2, 0.4), 3, 3, 0.4, 0.1),
         "not compositional", "hurts the other subtask more"),
        (Evidence(_interval(0.2, 0.05, 0.4), _interval(-0.2, -0.3, 0.05), 3, 3, 0.4, 0.1),
         "inconclusive", "CI of abl_delta"),
        # masks that fail their own subtask make the analysis uninformative
        (Evidence(_interval(0.0, -0.05, 0.05), _interval(0.0, -0.05, 0.05), 2, 0, 0.0, 0.1),
         "inconclusive", "2 of 2 masks do not solve"),
    ],
)  # fmt: skip
def test_verdict_rule(evidence: Evidence, expected: str, reason: str) -> None:
    verdict, why = decide(evidence, margin=0.1)
    assert verdict == expected
    assert reason in why


def _report_from_rows(control_signature: bool) -> sc.CompositionalityReport:
    """A report built from hand-made rows: the trained arm shows the signature; the
    random-init arm shows it too, or not."""
    rng = np.random.default_rng(0)
    n = 400

    def scores(p: float) -> np.ndarray:
        return (rng.random(n) < p).astype(float)

    rows, examples, random = [], {}, {}
    for kind in ("trained", "random_init"):
        signature = kind == "trained" or control_signature
        for target, other in (("A", "B"), ("B", "A")):
            for seed in range(3):
                acc = dict(sub_t=0.95, sub_o=0.3, abl_t=0.3, abl_o=0.9) if signature else dict(
                    sub_t=0.95, sub_o=0.6, abl_t=0.6, abl_o=0.6)  # fmt: skip
                ex = {k: scores(p) for k, p in acc.items()}
                key = (0, kind, target, seed)
                examples[key] = ex
                fl = {k: max(float(v.mean()), 0.25) for k, v in ex.items()}
                rows.append({
                    "model": 0, "kind": kind, "subroutine": target, "other": other, "seed": seed,
                    "chance_target": 0.25, "chance_other": 0.25, "full_target": 0.97,
                    "full_other": 0.97, "sub_target": fl["sub_t"], "sub_other": fl["sub_o"],
                    "abl_target": fl["abl_t"], "abl_other": fl["abl_o"],
                    "sub_delta": fl["sub_t"] - fl["sub_o"], "abl_delta": fl["abl_t"] - fl["abl_o"],
                    "density": 0.1, "selective_effect": (0.97 - fl["abl_t"]) - (0.97 - fl["abl_o"]),
                    "solves_target": True,
                })  # fmt: skip
                random[key] = rng.normal(0.0, 0.03, 10)
    return sc.CompositionalityReport.build(rows, {}, examples, random, n_boot=500)


def test_untrained_control_with_the_same_signature_blocks_compositional() -> None:
    report = _report_from_rows(control_signature=True)
    assert report.verdict == {"A": "inconclusive", "B": "inconclusive"}
    assert "untrained control shows the signature" in report.reasons["A"]
    assert any(
        "untrained (random-init) control shows the signature" in w for w in report.warnings()
    )
    clean = _report_from_rows(control_signature=False)
    assert clean.verdict == {"A": "compositional", "B": "compositional"}
    assert clean.controlled and not any("random-init" in w for w in clean.warnings())


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


def test_custom_metric_needs_per_example_scores() -> None:
    a, b = planted_tasks()
    b.name = "B"
    scalar = sc.Subtask("A", a.train, a.test, chance=0.5, readout=a.readout,
                        metric=lambda logits, y: float((logits.argmax(-1) == y).float().mean()))  # fmt: skip
    with pytest.raises(sc.ConfigError, match="score per example"):
        sc.test_compositionality(
            planted_mlp(), scalar, b, mask=MASK, train=TRAIN, seeds=1, controls=()
        )
    # a per-example metric is honoured: here it scores every example 1, whatever the model does
    lenient = sc.Subtask("A", a.train, a.test, chance=0.5, readout=a.readout,
                         metric=lambda logits, y: torch.ones(len(y)))  # fmt: skip
    report = sc.test_compositionality(
        planted_mlp(), lenient, b, mask=MASK, train=TRAIN, seeds=1, controls=(), n_boot=50
    )
    row = report.table[report.table["subroutine"] == "A"].iloc[0]
    assert row["abl_target"] == 1.0  # the metric, not accuracy (A's accuracy is 0.5 there)


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
    # a mask that cannot do its own subtask makes the analysis uninformative
    assert report.verdict == {"A": "inconclusive", "B": "inconclusive"}
    assert report.reasons["A"].startswith("1 of 1 masks do not solve their own subtask")


def test_successful_masks_solve_their_subtask(modular) -> None:
    trained = modular.table[modular.table["kind"] == "trained"]
    assert trained["solves_target"].all()
    assert "do not solve" not in modular.to_markdown()
