"""nnsight's remote path: ablate / isolate / evaluate as interventions inside model.trace.

Every run goes through ``remote="local"``, nnsight's serverless dry run of NDIF: the trace
is serialized as for the server, deserialized with non-installed modules hidden and run
here. The results must equal the local hooks' results, and no request may carry sc-interp.
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import pytest
import torch

import sc_interp as sc

transformers = pytest.importorskip("transformers")
nnsight = pytest.importorskip("nnsight")

WORDS = ["[UNK]", "[PAD]", "the", "cat", "dog", "cats", "dogs", "runs", "run", "sleeps", "sleep"]


def _tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]"
    )


def _language_model(family: str = "gpt2"):

    torch.manual_seed(0)
    if family == "gpt2":
        cfg = transformers.GPT2Config(
            n_layer=2, n_embd=16, n_head=2, vocab_size=len(WORDS), n_positions=16
        )
        hf = transformers.GPT2LMHeadModel(cfg).eval()
    else:
        cfg = transformers.LlamaConfig(
            vocab_size=len(WORDS), hidden_size=16, intermediate_size=24, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
        )  # fmt: skip
        hf = transformers.LlamaForCausalLM(cfg).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nnsight 0.8 deprecates LanguageModel; it works
        return nnsight.LanguageModel(hf, tokenizer=_tokenizer()), hf


def _prompt_task(lm, padding_side: str = "left") -> sc.Subtask:
    subjects = ["the cat", "the dog", "the cats", "the dogs", "cat", "dogs"]
    verbs = {"cat": (" runs", " run"), "dog": (" sleeps", " sleep")}
    rows = []
    for s in subjects:
        noun = s.split()[-1]
        singular = not noun.endswith("s")
        good, bad = verbs[noun.rstrip("s")]
        rows.append((s, good if singular else bad, bad if singular else good))
    prompts, answers, wrong = (list(c) for c in zip(*rows, strict=True))
    data = (prompts * 3, answers * 3, wrong * 3)
    return sc.Subtask.from_prompts(
        "agree",
        lm,
        data,
        data,
        padding_side=padding_side,
        batch_size=7,  # type: ignore[arg-type]
    )


def _subnetwork(lm, unit: str, seed: int) -> sc.Subnetwork:
    g = torch.Generator().manual_seed(seed)
    sites = {s.name: s for s in (sc.list_sites(lm, unit))}
    masks = {name: torch.rand(site.shape, generator=g) < 0.5 for name, site in sites.items()}
    for m in masks.values():  # at least one unit kept and one removed per site
        m.view(-1)[0], m.view(-1)[-1] = True, False
    return sc.Subnetwork.from_masks(lm, masks)


@pytest.fixture
def requests(monkeypatch):
    """Every serialized remote request of the test (the bytes NDIF would receive)."""
    from nnsight.schema.request import RequestModel

    blobs: list[bytes] = []
    original = RequestModel.serialize

    def capture(*args, **kwargs):
        blob = original(*args, **kwargs)
        blobs.append(blob if isinstance(blob, bytes) else bytes(blob))
        return blob

    monkeypatch.setattr(RequestModel, "serialize", staticmethod(capture))
    return blobs


def _names_sc_interp(blob: bytes) -> bool:
    """Whether a request refers to sc-interp code (``sc_interp.<module>``), which a server
    without sc-interp could not unpickle. The block's file name (``.../sc_interp/...``)
    travels as a plain string for tracebacks and is fine."""
    import re

    return re.search(rb"sc_interp\.", blob) is not None


def _hooks(hf) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in hf.modules())


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("unit", ["head", "neuron"])
@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_remote_path_equals_local_hooks(family, unit, method, requests) -> None:
    lm, hf = _language_model(family)
    task = _prompt_task(lm, "left" if unit == "head" else "right")
    sub = _subnetwork(lm, unit, seed=3)
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    hooks_before = _hooks(hf)
    for context in (sc.ablate, sc.isolate):
        with context(lm, sub, method, data=task, seed=5):
            local = sc.evaluate(lm, task)
        n_requests = len(requests)
        with context(lm, sub, method, data=task, seed=5, remote="local") as plan:
            assert _hooks(hf) == hooks_before  # nothing acts through local hooks
            remote = sc.evaluate(lm, task)
        assert len(requests) > n_requests
        assert remote.n == local.n == 18
        assert remote.accuracy == local.accuracy
        assert remote.loss == pytest.approx(local.loss, abs=1e-6)
        assert remote.logit_diff == pytest.approx(local.logit_diff, abs=1e-5)
        assert set(plan.keep) == set(sub.masks)
    plain = sc.evaluate(lm, task)
    with sc.ablate(lm, sub, method, data=task, seed=5):
        ablated = sc.evaluate(lm, task)
    assert ablated.loss != pytest.approx(plain.loss, abs=1e-6)  # the ablation does something
    assert not any(_names_sc_interp(b) for b in requests)  # the server needs no sc-interp
    assert all(torch.equal(hf.state_dict()[k], v) for k, v in state.items())
    assert _hooks(hf) == hooks_before


def test_remote_zero_ablation_matches_hand_zeroed_weights(requests) -> None:
    """Known answer: removing GPT-2 MLP units = zeroing their c_fc columns and bias."""
    lm, hf = _language_model("gpt2")
    task = _prompt_task(lm)
    site = "transformer.h.1.mlp.c_proj"
    removed = torch.zeros(64, dtype=torch.bool)
    removed[[0, 5, 17, 40, 63]] = True
    sub = sc.Subnetwork.from_masks(lm, {site: removed})
    manual = copy.deepcopy(hf)
    with torch.no_grad():  # Conv1D: weight [in, out]; the hidden units are c_fc's outputs
        manual.transformer.h[1].mlp.c_fc.weight[:, removed] = 0
        manual.transformer.h[1].mlp.c_fc.bias[removed] = 0
    expected = sc.evaluate(manual, task)
    with sc.ablate(lm, sub, remote="local"):
        got = sc.evaluate(lm, task)
    assert got.accuracy == expected.accuracy
    assert got.loss == pytest.approx(expected.loss, abs=1e-6)
    assert requests and not any(_names_sc_interp(b) for b in requests)


def test_evaluate_remote_without_ablation(requests) -> None:
    lm, _ = _language_model("gpt2")
    task = _prompt_task(lm)
    local = sc.evaluate(lm, task)
    remote = sc.evaluate(lm, task, remote="local")
    assert (remote.accuracy, remote.n) == (local.accuracy, local.n)
    assert remote.loss == pytest.approx(local.loss, abs=1e-6)
    assert len(requests) == 3  # 18 prompts in batches of 7
    assert not any(_names_sc_interp(b) for b in requests)


def test_remote_path_refusals_leave_nothing() -> None:
    lm, hf = _language_model("gpt2")
    task = _prompt_task(lm)
    heads = _subnetwork(lm, "head", seed=1)
    weights = sc.Subnetwork.from_masks(
        lm, {"transformer.h.0.mlp.c_fc.weight": torch.ones(16, 64, dtype=torch.bool)}
    )
    with pytest.raises(sc.ConfigError, match="weight masks cannot run as trace"):
        with sc.ablate(lm, weights, remote="local"):
            pass
    with pytest.raises(sc.ConfigError, match="remote must be"):
        with sc.ablate(lm, heads, remote=""):
            pass
    with pytest.raises(sc.ConfigError, match="does not run through a trace"):
        with sc.ablate(lm, heads, "random", remote="local"):
            pass
    with pytest.raises(sc.UnsupportedModelError, match="remotable nnsight model"):
        with sc.ablate(nnsight.NNsight(hf), heads, remote="local"):
            pass
    with sc.attach_masks(lm, sc.MaskConfig(unit="neuron")):
        with pytest.raises(sc.ConfigError, match="would not run remotely"):
            with sc.ablate(lm, heads, remote="local"):
                pass
    with pytest.raises(sc.ConfigError, match="nest none"):
        with sc.ablate(lm, heads, remote="local"), sc.isolate(lm, heads, remote="local"):
            pass
    with pytest.raises(KeyError), sc.isolate(lm, heads, "mean", data=task, remote="local"):
        raise KeyError("the user's own error")
    # nothing is left: plain evaluation runs unmasked, through plain traces
    assert _hooks(hf) == 0
    from sc_interp import _trace_path

    assert _trace_path.active(lm) is None


def test_documented_custom_trace_recipe(requests) -> None:
    """The how-to's recipe for a trace of one's own gives the hand-zeroed model's logits."""
    lm, hf = _language_model("gpt2")
    site = "transformer.h.0.attn.c_proj"  # heads: slices of c_proj's input
    kept = torch.tensor([False, True])
    sub = sc.Subnetwork.from_masks(lm, {site: kept})
    manual = copy.deepcopy(hf)
    with torch.no_grad():  # head 0 removed = zero its 8 input rows of c_proj (Conv1D [in, out])
        manual.transformer.h[0].attn.c_proj.weight[:8] = 0
    tokens = torch.tensor([[2, 3, 7, 2, 4], [5, 9, 2, 6, 8]])
    with sc.isolate(lm, sub, remote="local") as plan:
        steps = plan.interventions(tokens)
        with lm.trace(tokens, remote="local"):
            for envoy, io, keep, fill in steps:
                act = envoy.input if io == "input" else envoy.output
                new = act * keep.to(act.device, act.dtype) + fill.to(act.device, act.dtype)
                if io == "input":
                    envoy.input = new
                else:
                    envoy.output = new
            logits = lm.output.logits.save()
    torch.testing.assert_close(logits, manual(tokens).logits.detach(), atol=1e-6, rtol=1e-5)
    assert requests and not any(_names_sc_interp(b) for b in requests)


def test_the_request_check_sees_sc_interp_code(requests) -> None:
    """The check above is not vacuous: a block using sc-interp code is seen in its request."""
    from sc_interp.sites import expand_to_activation

    lm, _ = _language_model("gpt2")
    site = sc.list_sites(lm, "head")[0]
    with contextlib.suppress(Exception):  # a server without sc-interp could not run it
        with lm.trace(torch.tensor([[2, 3, 7]]), remote="local"):
            env = lm.transformer.h[0].attn.c_proj
            env.input = env.input * expand_to_activation(torch.ones(2), site, env.input)
            lm.output.logits.save()
    assert requests and any(_names_sc_interp(b) for b in requests)
