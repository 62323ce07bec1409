"""The random-subnetwork control batched across draws equals one ablation per draw.

The expected scores come from ``sc.ablate`` (a MaskSet's hooks, one draw at a time) and
``correctness``; the batched path repeats each test batch once per draw and masks the rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import sc_interp as sc
from sc_interp import _random_draws
from sc_interp.analysis import _random_masks, correctness
from sc_interp.toy import planted_mlp, planted_tasks


def _one_at_a_time(model, draws, tasks) -> list[list[np.ndarray]]:
    out = []
    for draw in draws:
        with sc.ablate(model, draw):
            out.append([correctness(model, t) for t in tasks])
    return out


def _draws(model, unit: str, n: int, seed: int) -> tuple[sc.Subnetwork, list]:
    g = torch.Generator().manual_seed(seed)
    sites = sc.list_sites(model, unit)
    masks = {s.name: torch.rand(s.shape, generator=g) < 0.6 for s in sites}
    sub = sc.Subnetwork.from_masks(model, masks)
    return sub, [_random_masks(sub, g) for _ in range(n)]


def _assert_same(batched, expected) -> None:
    assert len(batched) == len(expected)
    for got_draw, want_draw in zip(batched, expected, strict=True):
        for got, want in zip(got_draw, want_draw, strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("max_rows", [512, 20])  # 20: chunks of draws smaller than the batch
def test_planted_mlp_neurons(monkeypatch, max_rows: int) -> None:
    monkeypatch.setattr(_random_draws, "MAX_ROWS", max_rows)
    model = planted_mlp()
    tasks = planted_tasks(n_train=32, n_test=48)
    _, draws = _draws(model, "neuron", 7, seed=1)
    expected = _one_at_a_time(model, draws, tasks)
    batched = _random_draws.ablated_scores(model, "neuron", draws, tasks, "zero", None, 0)
    _assert_same(batched, expected)
    # the draws differ, so the check compares different ablations, not one seven times
    assert len({tuple(e[0]) for e in expected}) > 1


@pytest.mark.parametrize("unit", ["head", "neuron"])
def test_odd_one_out_bridge(unit: str, monkeypatch) -> None:
    """The demo's SVA task: four candidates per example on a TL 4 bridge."""
    from sc_interp.tasks import build_task_model, make_task

    monkeypatch.setattr(_random_draws, "MAX_ROWS", 64)  # several chunks of draws per batch
    task = make_task("sva", n_train=40, n_test=24, n_val=8, seed=0)
    model = build_task_model(task, seed=0, quick=True, progress=False)
    subtasks = [
        sc.Subtask(d.name, train=d, test=task.partition(k), chance=0.25, batch_size=16)
        for k, d in (("a", task.a), ("b", task.b))
    ]
    _, draws = _draws(model, unit, 5, seed=2)
    expected = _one_at_a_time(model, draws, subtasks)
    batched = _random_draws.ablated_scores(model, unit, draws, subtasks, "zero", None, 0)
    _assert_same(batched, expected)


def test_hf_heads_on_padded_prompts() -> None:
    """Head sites that mask a module's input (Hugging Face), prompts padded on the left."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    words = ["[UNK]", "[PAD]", "the", "cat", "cats", "dog", "dogs", "runs", "run"]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]"
    )
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=4, vocab_size=len(words))
    model = transformers.GPT2LMHeadModel(cfg).eval()
    prompts = ["the cat", "the dogs", "cats", "the the dog", "dog", "the cats"] * 2
    answers = [" runs", " run", " run", " runs", " runs", " run"] * 2
    wrong = [" run", " runs", " runs", " run", " run", " runs"] * 2
    data = (prompts, answers, wrong)
    task = sc.Subtask.from_prompts(
        "agree", model, data, data, tokenizer=tokenizer, padding_side="left", batch_size=5
    )
    # per-example log-probability of the answer: a continuous score that every head moves
    # (0/1 correctness of this random model hardly changes when heads are removed)
    task = dataclasses.replace(task, metric=lambda logits, y: logits.log_softmax(-1)[
        torch.arange(len(y)), y.to(logits.device)
    ])  # fmt: skip
    _, draws = _draws(model, "head", 4, seed=3)
    expected = _one_at_a_time(model, draws, [task])
    batched = _random_draws.ablated_scores(model, "head", draws, [task], "zero", None, 0)
    for got, want in zip(batched, expected, strict=True):
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert len({tuple(np.round(e[0], 4)) for e in expected}) > 1  # the draws ablate differently


def test_study_uses_the_batched_path_and_keeps_its_result(monkeypatch) -> None:
    """test_compositionality gives the same report whether the draws are batched or not."""
    model = planted_mlp()
    a, b = planted_tasks(n_train=64, n_test=64)
    kwargs = dict(
        mask=sc.MaskConfig(unit="neuron", targets=["0"]),
        train=sc.TrainConfig(epochs=5, lr=0.05, progress=False),
        seeds=1, controls=("random_subnetwork",), n_random=10, n_boot=50,
    )  # fmt: skip
    calls: list[int] = []
    original = _random_draws._batched_zero

    def counting(*args, **kw):
        calls.append(1)
        return original(*args, **kw)

    monkeypatch.setattr(_random_draws, "_batched_zero", counting)
    batched = sc.test_compositionality(model, a, b, **kwargs).summary
    assert calls  # the batched path ran
    monkeypatch.setattr(_random_draws, "_batched_zero", lambda m, u, d, t: _one_at_a_time(m, d, t))
    looped = sc.test_compositionality(model, a, b, **kwargs).summary
    assert batched.equals(looped)


class _SequenceFirst(torch.nn.Module):
    """Runs its hidden layer on ``[positions, batch, features]``: rows are not batch-major."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = torch.nn.Linear(3, 16)
        self.head = torch.nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, 4 positions, 3]
        h = torch.relu(self.fc1(x.transpose(0, 1)))  # [4, batch, 16]
        return self.head(h.mean(0))


def test_sequence_first_model_falls_back_to_one_ablation_per_draw(caplog) -> None:
    """Four positions split evenly into two copies, so a blind row split would be wrong."""
    model = _SequenceFirst()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 4, 3, generator=g)
    y = (x.sum((1, 2)) > 0).long()
    task = sc.Subtask("t", (x, y), (x, y), chance=0.5, metric=lambda logits, labels: logits[:, 0])
    _, draws = _draws(model, "neuron", 2, seed=4)
    expected = _one_at_a_time(model, draws, [task])
    with caplog.at_level("INFO", logger="sc_interp._random_draws"):
        got = _random_draws.ablated_scores(model, "neuron", draws, [task], "zero", None, 0)
    for g_draw, e_draw in zip(got, expected, strict=True):
        np.testing.assert_allclose(g_draw[0], e_draw[0], rtol=1e-6)
    assert "one at a time" in caplog.text
