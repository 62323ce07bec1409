"""A whole study on sentences the package did not generate: the paper's evaluation design.

A tiny model is trained on a compound agreement task written here (its own words and
templates), masks are learned on the subroutine sets, and the subnetworks are scored on
the compound task's partitions; the report says which data each number comes from.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import torch

import sc_interp as sc
from sc_interp.tasks import build_task_model, odd_one_out, task_accuracy, word_vocab

pytest.importorskip("transformer_lens")

NOUNS = [("fox", "foxes"), ("owl", "owls"), ("hare", "hares"), ("crow", "crows")]
VERBS = [("jumps", "jump"), ("sings", "sing"), ("naps", "nap"), ("hops", "hop")]


def sentence(rng: random.Random, subject: int, verb: int) -> str:
    """``subject``/``verb``: 0 singular, 1 plural; sometimes an attractor of either number."""
    words = ["the", rng.choice(NOUNS)[subject]]
    if rng.random() < 0.4:
        words += ["near", "the", rng.choice(NOUNS)[rng.randrange(2)]]
    return " ".join([*words, rng.choice(VERBS)[verb]])


def problems(rng: random.Random, n: int, kind: str) -> list[list[str]]:
    """Singular experiment, odd one last: three regular sentences and the odd one."""
    out = []
    for _ in range(n):
        if kind == "compound":  # regular: grammatical singular; odd: subject or verb plural
            regular = [(0, 0)] * 3
            odd = rng.choice([(1, 0), (0, 1)])
        elif kind in ("subject", "verb"):  # the paper's sets: the other property varies
            mixed = rng.choice([[0, 0, 1], [0, 1, 1], [1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 1]])
            regular = [(0, m) if kind == "subject" else (m, 0) for m in mixed]
            odd = (1, 0) if kind == "subject" else (0, 1)
        else:  # partitions: only one property flips in the odd one
            regular = [(0, 0)] * 3
            odd = (1, 0) if kind == "partition-subject" else (0, 1)
        out.append([sentence(rng, *p) for p in [*regular, odd]])
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: faster on the busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def study():
    rng = random.Random(7)
    sets = {
        kind: {split: problems(rng, n, kind) for split, n in sizes.items()}
        for kind, sizes in {
            "compound": {"train": 400, "test": 80},
            "subject": {"train": 120, "val": 40, "test": 40},
            "verb": {"train": 120, "val": 40, "test": 40},
            "partition-subject": {"train": 1, "test": 80},
            "partition-verb": {"train": 1, "test": 80},
        }.items()
    }
    vocab = word_vocab(sets)
    data = {
        kind: odd_one_out(splits, vocab=vocab, max_len=8, seed=1, name=kind, source=f"my {kind}")
        for kind, splits in sets.items()
    }
    torch.manual_seed(0)
    model = build_task_model(data["compound"], epochs=6, lr=5e-3, seed=0)
    return model, data


def test_a_study_on_outside_sentences(study) -> None:
    model, data = study
    assert task_accuracy(model, data["compound"]) > 0.8  # the model learned the compound task
    for part in ("partition-subject", "partition-verb"):
        assert task_accuracy(model, data[part]) > 0.8
    a = sc.Subtask("subject", train=data["subject"], val=data["subject"],
                   test=data["partition-subject"])  # fmt: skip
    b = sc.Subtask("verb", train=data["verb"], val=data["verb"], test=data["partition-verb"])
    report = sc.test_compositionality(
        model, a, b,
        mask=sc.MaskConfig(unit="neuron"),
        train=sc.TrainConfig(epochs=3, lr=0.05, l0=1e-3, progress=False),
        seeds=1, controls=(), n_boot=100,
    )  # fmt: skip
    assert set(report.verdict) == {"subject", "verb"}
    assert set(report.table["solves_on"]) == {"val"}
    sources = report.data.set_index(["subtask", "split"])["source"]
    assert sources[("subject", "train")] == "my subject, train split"
    assert sources[("subject", "val")] == "my subject, val split"
    assert sources[("subject", "test")] == "my partition-subject, test split"
    text = report.to_markdown()
    assert (
        "- **subject**: mask trained on: my subject, train split; solves_target judged on: my "
        "subject, val split; scored on: subject: my partition-subject, test split; verb: my "
        "partition-verb, test split"
    ) in text
    # the numbers are the partitions': the full model's accuracy there is the table's
    table = report.table.set_index("subroutine")
    assert table.loc["subject", "full_target"] == pytest.approx(
        task_accuracy(model, data["partition-subject"])
    )
    # solves_target is judged on the sets' val splits, where a compound model may be poor
    on_val = {k: task_accuracy(model, data[k], "val") for k in ("subject", "verb")}
    assert table.loc["verb", "full_judged"] == pytest.approx(on_val["verb"])
    near_chance = [w for w in report.warnings() if "near chance" in w]
    assert len(near_chance) == sum(acc < 0.30 for acc in on_val.values())


def test_task_data_goes_straight_into_the_analysis(study) -> None:
    model, data = study
    report = sc.test_compositionality(
        model, data["subject"], data["verb"],
        mask=sc.MaskConfig(unit="neuron"),
        train=sc.TrainConfig(epochs=1, lr=0.05, l0=0.0, progress=False),
        seeds=1, controls=(), n_boot=50,
    )  # fmt: skip
    assert set(report.verdict) == {"subject", "verb"}
    assert report.table["chance_target"].tolist() == [0.25, 0.25]
    assert set(report.data["source"]) >= {"my subject, train split", "my verb, test split"}
