"""Next-token prompt subtasks (Subtask.from_prompts) on TL4, HF and nnsight language models.

Every expected value is computed here by running each prompt alone, unpadded, and reading
the candidates' logits at its last position.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import needs_nnsight, needs_tl3, needs_tl4

import sc_interp as sc
from sc_interp._run import forward

transformers = pytest.importorskip("transformers")

WORDS = ["<unk>", "<pad>", "<bos>", "the", "cat", "dog", "cats", "dogs", "runs", "run",
         "sleeps", "sleep", "near", "big", "old", "with"]  # fmt: skip
PROMPTS = ["the cat", "the big dog near the cats", "the dogs near the old cat", "the cats"]
ANSWERS = ["runs", "runs", "run", "sleep"]
WRONG = [["run", "sleep"], ["run", "sleeps"], ["runs", "sleep"], ["sleeps", "run"]]
DATA = (PROMPTS, ANSWERS, WRONG)
SIDES = ("left", "right")


def word_tokenizer():
    """A word-level tokenizer built offline (BOS added like TransformerLens expects)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    raw = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    raw.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>",
        name_or_path="offline", add_bos_token=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer()


@pytest.fixture(scope="module")
def bridge(tok):
    from conftest import TL_MAJOR

    if TL_MAJOR < 4:
        pytest.skip("needs transformer-lens 4")
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg = TransformerBridgeConfig(
        d_model=16, d_head=4, n_heads=4, n_layers=2, n_ctx=10, d_vocab=len(WORDS), d_mlp=32,
        act_fn="relu", seed=3,
    )  # fmt: skip
    return TransformerBridge.boot_native(cfg, tokenizer=tok)


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=16, n_head=2, vocab_size=len(WORDS), n_positions=10
    )
    return transformers.GPT2LMHeadModel(cfg).eval()


def hand_logits(run, tok, prompts, answers, wrong) -> torch.Tensor:
    """[n, 1 + k] logits of [answer, *wrong] at each prompt's last token, one prompt at a time."""
    rows = []
    with torch.no_grad():
        for prompt, answer, bad in zip(prompts, answers, wrong, strict=True):
            ids = tok(prompt, return_tensors="pt")["input_ids"]
            assert ids[0, 0] == tok.bos_token_id  # one BOS, as the model's own convention
            last = run(ids)[0, -1]
            rows.append(last[tok.convert_tokens_to_ids([answer, *bad])])
    return torch.stack(rows)


def library_readout(model, task) -> tuple[torch.Tensor, torch.Tensor, sc.Evaluation]:
    x, y = task.test
    with torch.no_grad():
        logits = task.logits(forward(model, x), x)
    return logits, y, sc.evaluate(model, task)


def check_against_hand(model, task, hand: torch.Tensor, side: str) -> None:
    x = task.test[0]
    lengths = torch.tensor([len(p.split()) + 1 for p in PROMPTS])  # words + <bos>
    assert (x.attention_mask.sum(1) == lengths).all()
    pad_col = 0 if side == "left" else -1
    assert (x.tokens[lengths < lengths.max(), pad_col] == 1).all()  # really padded on that side
    logits, labels, ev = library_readout(model, task)
    for i in range(len(PROMPTS)):
        answer = int(labels[i])
        torch.testing.assert_close(logits[i, answer], hand[i, 0], atol=1e-5, rtol=1e-5)
        others = [logits[i, j] for j in range(logits.shape[1]) if j != answer]
        torch.testing.assert_close(torch.stack(others).sort().values, hand[i, 1:].sort().values,
                                   atol=1e-5, rtol=1e-5)  # fmt: skip
    correct = (hand[:, 0] > hand[:, 1:].max(1).values).float().mean()
    margin = (hand[:, 0] - hand[:, 1:].max(1).values).mean()
    assert ev.accuracy == pytest.approx(float(correct))
    assert ev.logit_diff == pytest.approx(float(margin), abs=1e-5)
    assert task.chance == pytest.approx(1 / 3)


@needs_tl4
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("shuffle", [False, True])
def test_bridge_readout_is_each_prompts_last_token(bridge, tok, side, shuffle) -> None:
    task = sc.Subtask.from_prompts(
        "agreement", bridge, train=DATA, test=DATA, padding_side=side, shuffle=shuffle
    )
    hand = hand_logits(bridge, tok, *DATA)
    check_against_hand(bridge, task, hand, side)
    if not shuffle:
        assert task.test[1].tolist() == [0, 0, 0, 0]
    else:  # balanced answer positions
        assert sorted(torch.bincount(task.test[1], minlength=3).tolist()) == [1, 1, 2]


@pytest.mark.tl3
@needs_tl3
@pytest.mark.parametrize("side", SIDES)
def test_hooked_transformer_readout_is_each_prompts_last_token(tok, side) -> None:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        d_model=16, d_head=4, n_heads=4, n_layers=2, n_ctx=10, d_vocab=len(WORDS), d_mlp=32,
        act_fn="relu", seed=3,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TL 3 deprecates HookedTransformer
        model = HookedTransformer(cfg, tokenizer=tok)
    task = sc.Subtask.from_prompts("agreement", model, DATA, DATA, padding_side=side)
    check_against_hand(model, task, hand_logits(model, tok, *DATA), side)


@pytest.mark.parametrize("side", SIDES)
def test_hf_model_readout_is_each_prompts_last_token(gpt2, tok, side) -> None:
    task = sc.Subtask.from_prompts(
        "agreement", gpt2, train=DATA, test=DATA, padding_side=side, tokenizer=tok
    )
    hand = hand_logits(lambda ids: gpt2(ids).logits, tok, *DATA)
    check_against_hand(gpt2, task, hand, side)


@needs_nnsight
@pytest.mark.parametrize("side", SIDES)
def test_nnsight_language_model_readout_is_each_prompts_last_token(gpt2, tok, side) -> None:
    from nnsight import LanguageModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nnsight 0.8 deprecates LanguageModel
        lm = LanguageModel(gpt2, tokenizer=tok)
    task = sc.Subtask.from_prompts("agreement", lm, train=DATA, test=DATA, padding_side=side)
    hand = hand_logits(lambda ids: gpt2(ids).logits, tok, *DATA)
    check_against_hand(lm, task, hand, side)
    # masks learned and applied through nnsight
    cfg = sc.MaskConfig(unit="neuron", targets=["transformer.h.0.mlp.c_proj"])
    sub = sc.train_masks(lm, cfg, task, sc.TrainConfig(epochs=2, lr=0.1, l0=0.0, progress=False))
    with sc.ablate(lm, sub, "mean", data=task):
        assert 0.0 <= sc.evaluate(lm, task).accuracy <= 1.0


def test_prompt_errors_name_the_prompt(gpt2, tok) -> None:
    def make(train, **kw):
        return sc.Subtask.from_prompts("t", gpt2, train=train, test=DATA, tokenizer=tok, **kw)

    with pytest.raises(
        sc.DataError, match=r"prompt 1 'the cats'.*'sleeps run' is 2 tokens.*'sleeps', 'run'"
    ):
        make((["the cat", "the cats"], ["runs", "sleeps run"], ["run", "runs"]))
    with pytest.raises(sc.DataError, match=r"prompt 0 'the cat'.*wrong token 'run run'"):
        make((["the cat"], ["runs"], [["run run"]]))
    with pytest.raises(sc.DataError, match="2 prompts, 1 answers"):
        make((["the cat", "the dog"], ["runs"], ["run", "run"]))
    with pytest.raises(sc.DataError, match="empty"):
        make(([], [], []))
    with pytest.raises(sc.DataError, match="same number of candidates"):
        make((["the cat", "the dog"], ["runs", "runs"], ["run", ["run", "sleep"]]))
    with pytest.raises(sc.DataError, match="different tokens"):
        make((["the cat"], ["runs"], ["runs"]))
    too_long = " ".join(["the big old cat"] * 3)
    with pytest.raises(sc.DataError, match=r"13 tokens, but the model's context holds 10"):
        make(([too_long], ["runs"], ["run"]))
    with pytest.raises(sc.ConfigError, match="tokenizer="):
        sc.Subtask.from_prompts("t", gpt2, train=DATA, test=DATA)

    class Plain(torch.nn.Module):  # a causal LM whose forward takes no attention mask
        def __init__(self) -> None:
            super().__init__()
            self.inner = gpt2

        def forward(self, tokens):
            return self.inner(tokens).logits

    with pytest.raises(sc.ConfigError, match="right"):
        sc.Subtask.from_prompts("t", Plain(), DATA, DATA, tokenizer=tok, padding_side="left")
    plain = sc.Subtask.from_prompts("t", Plain(), DATA, DATA, tokenizer=tok)
    assert plain.test[0].padding_side == "right"
    hand = hand_logits(lambda ids: gpt2(ids).logits, tok, *DATA)
    check_against_hand(Plain(), plain, hand, "right")


@needs_tl4
def test_mean_ablation_uses_real_tokens_only(bridge, tok) -> None:
    """Ablating every neuron of a layer with method='mean' writes the mean over real tokens."""
    task = sc.Subtask.from_prompts("t", bridge, DATA, DATA, padding_side="left", shuffle=False)
    site = "blocks.0.mlp.hook_post"
    point = bridge.hook_dict[site]
    acts = []
    handle = point.register_forward_hook(lambda m, i, o: acts.append(o.detach()[0]))
    with torch.no_grad():
        for prompt in PROMPTS:  # unpadded, one at a time
            bridge(tok(prompt, return_tensors="pt")["input_ids"])
    handle.remove()
    mean = torch.cat(acts).mean(0)
    handle = point.register_forward_hook(lambda m, i, o: mean.expand_as(o).clone())
    try:
        expected = hand_logits(bridge, tok, *DATA)
    finally:
        handle.remove()
    everything = sc.Subnetwork({site: torch.ones(32)}, sc.MaskConfig(unit="neuron"))
    with sc.ablate(bridge, everything, "mean", data=task):
        logits, _, _ = library_readout(bridge, task)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


@needs_tl4
def test_prompt_subtask_through_training_and_the_analysis(bridge, tok) -> None:
    short = (["the cat", "the dogs"], ["runs", "run"], [["run", "sleep"], ["runs", "sleeps"]])
    a = sc.Subtask.from_prompts("singular", bridge, DATA, DATA, val=DATA, source="my prompts")
    b = sc.Subtask.from_prompts("short", bridge, short, short)  # shorter: padded to fewer tokens
    assert b.test[0].shape[1] < a.test[0].shape[1]
    cfg = sc.MaskConfig(unit="neuron")
    train = sc.TrainConfig(epochs=2, lr=0.1, l0=0.0, progress=False)
    sub = sc.train_masks(bridge, cfg, a, train)
    assert "val_accuracy" in sub.history.columns
    for method in ("zero", "mean", "resample"):
        with sc.isolate(bridge, sub, method, data=a):
            assert 0.0 <= sc.evaluate(bridge, a).accuracy <= 1.0
    report = sc.test_compositionality(
        bridge, a, b, mask=cfg, train=train, seeds=1, controls=(), method="resample", n_boot=50
    )
    assert set(report.verdict) == {"singular", "short"}
    assert set(report.table["solves_on"]) == {"val", "test"}
    data = report.data.set_index(["subtask", "split"])
    assert data.loc[("singular", "train"), "source"] == "my prompts, train split"
    assert "mask trained on: my prompts, train split" in report.to_markdown()
