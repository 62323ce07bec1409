"""Tiny Hugging Face models of every family we support, built from configs (no downloads).

Each :class:`Family` says, in the test's own words (not the library's), where a family's
heads, MLP neurons and one weight live, so tests can write ablations by hand: a torch
pre-hook zeroing a head's slice of the output projection's input, or a zeroed weight
entry in a copy of the model. Weights are re-drawn with std 0.3 so one unit matters.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

VOCAB = 50
N_HEADS, N_LAYERS, HIDDEN, D_MLP = 4, 2, 16, 32
IDS = dict(bos_token_id=49, eos_token_id=49, pad_token_id=48)


@dataclass(frozen=True)
class Family:
    name: str
    make: Callable[[], nn.Module]  # the plain HF model, eval mode, std-0.3 weights
    head: str  # output projection, "{L}" for the layer: heads are its input
    neuron: str  # MLP down projection: neurons are its input
    weight: str  # one attention weight, as a site name
    entry: tuple[int, int]  # an entry of that weight switched off
    head_dim: int = HIDDEN // N_HEADS
    d_mlp: int = D_MLP
    conv1d: bool = False  # GPT-2: weights are [in, out]
    causal: bool = True
    tied: tuple[str, str] | None = None  # (embedding, unembedding) modules sharing a tensor
    # entries of layer L's weights that belong to head H: {weight path: index function}
    head_weights: dict[str, Callable[[int], tuple]] = field(default_factory=dict)

    def at(self, pattern: str, layer: int) -> str:
        return pattern.format(L=layer)


def _reinit(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


def _build(config_cls: str, model_cls: str, **kw: object) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        import transformers

        torch.manual_seed(0)
        config = getattr(transformers, config_cls)(**kw, **IDS)
        return _reinit(getattr(transformers, model_cls)(config))

    return make


_SMALL = dict(
    hidden_size=HIDDEN, num_hidden_layers=N_LAYERS, num_attention_heads=N_HEADS,
    intermediate_size=D_MLP, vocab_size=VOCAB, max_position_embeddings=32,
)  # fmt: skip
_GQA = dict(_SMALL, num_key_value_heads=2)


def _rows(hd: int, offset: int = 0) -> Callable[[int], tuple]:
    return lambda h: (slice(offset + h * hd, offset + (h + 1) * hd), slice(None))


def _cols(hd: int, offset: int = 0) -> Callable[[int], tuple]:
    return lambda h: (slice(None), slice(offset + h * hd, offset + (h + 1) * hd))


_LLAMA_HEADS = {"self_attn.q_proj": _rows(4), "self_attn.o_proj": _cols(4)}

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            "gpt2",
            _build("GPT2Config", "GPT2LMHeadModel", n_embd=HIDDEN, n_layer=N_LAYERS,
                   n_head=N_HEADS, n_inner=D_MLP, vocab_size=VOCAB, n_positions=32),
            "transformer.h.{L}.attn.c_proj", "transformer.h.{L}.mlp.c_proj",
            "transformer.h.{L}.attn.c_attn.weight", (3, 37), conv1d=True,
            tied=("transformer.wte", "lm_head"),
            # c_attn [in, out] = [16, q|k|v]; c_proj [in, out]: head rows
            head_weights={"attn.c_attn": _cols(4), "attn.c_proj": _rows(4)},
        ),
        Family(
            "gpt_neox",
            _build("GPTNeoXConfig", "GPTNeoXForCausalLM", **_SMALL),
            "gpt_neox.layers.{L}.attention.dense", "gpt_neox.layers.{L}.mlp.dense_4h_to_h",
            "gpt_neox.layers.{L}.attention.query_key_value.weight", (20, 5),
            # query_key_value rows: [q_h k_h v_h] per head (3 * head_dim rows each)
            head_weights={"attention.query_key_value": _rows(12), "attention.dense": _cols(4)},
        ),
        Family(
            "llama",
            _build("LlamaConfig", "LlamaForCausalLM", **_GQA),
            "model.layers.{L}.self_attn.o_proj", "model.layers.{L}.mlp.down_proj",
            "model.layers.{L}.self_attn.v_proj.weight", (5, 3), head_weights=_LLAMA_HEADS,
        ),
        Family(
            "qwen2",
            _build("Qwen2Config", "Qwen2ForCausalLM", **_GQA),
            "model.layers.{L}.self_attn.o_proj", "model.layers.{L}.mlp.down_proj",
            "model.layers.{L}.self_attn.v_proj.weight", (6, 1), head_weights=_LLAMA_HEADS,
        ),
        Family(
            "gemma",  # head_dim 8 != hidden / heads, one key/value head, tied embeddings
            _build("GemmaConfig", "GemmaForCausalLM", **dict(_SMALL, num_key_value_heads=1, head_dim=8)),
            "model.layers.{L}.self_attn.o_proj", "model.layers.{L}.mlp.down_proj",
            "model.layers.{L}.self_attn.v_proj.weight", (2, 9), head_dim=8,
            tied=("model.embed_tokens", "lm_head"),
            head_weights={"self_attn.q_proj": _rows(8), "self_attn.o_proj": _cols(8)},
        ),
        Family(
            "bert",
            _build("BertConfig", "BertForMaskedLM", **_SMALL),
            "bert.encoder.layer.{L}.attention.output.dense", "bert.encoder.layer.{L}.output.dense",
            "bert.encoder.layer.{L}.attention.self.value.weight", (7, 2), causal=False,
            tied=("bert.embeddings.word_embeddings", "cls.predictions.decoder"),
            head_weights={"attention.self.query": _rows(4), "attention.output.dense": _cols(4)},
        ),
        # site discovery, all-on and one unit off only
        Family(
            "mistral",
            _build("MistralConfig", "MistralForCausalLM", **_GQA),
            "model.layers.{L}.self_attn.o_proj", "model.layers.{L}.mlp.down_proj",
            "model.layers.{L}.self_attn.k_proj.weight", (1, 1),
        ),
        Family(
            "gemma2",
            _build("Gemma2Config", "Gemma2ForCausalLM", **dict(_GQA, head_dim=8)),
            "model.layers.{L}.self_attn.o_proj", "model.layers.{L}.mlp.down_proj",
            "model.layers.{L}.self_attn.q_proj.weight", (9, 4), head_dim=8,
        ),
        Family(
            "phi",
            _build("PhiConfig", "PhiForCausalLM", **_SMALL),
            "model.layers.{L}.self_attn.dense", "model.layers.{L}.mlp.fc2",
            "model.layers.{L}.self_attn.q_proj.weight", (4, 4),
        ),
        Family(
            "opt",
            _build("OPTConfig", "OPTForCausalLM", hidden_size=HIDDEN, num_hidden_layers=N_LAYERS,
                   num_attention_heads=N_HEADS, ffn_dim=D_MLP, word_embed_proj_dim=HIDDEN,
                   vocab_size=VOCAB, max_position_embeddings=32),
            "model.decoder.layers.{L}.self_attn.out_proj", "model.decoder.layers.{L}.fc2",
            "model.decoder.layers.{L}.self_attn.v_proj.weight", (0, 0),
        ),
        Family(
            "qwen3",
            _build("Qwen3Config", "Qwen3ForCausalLM", **dict(_GQA, head_dim=4)),
            "model.layers.{L}.self_attn.o_proj", "model.layers.{L}.mlp.down_proj",
            "model.layers.{L}.self_attn.q_proj.weight", (3, 3),
        ),
        Family(
            "roberta",
            _build("RobertaConfig", "RobertaForMaskedLM", **dict(_SMALL, max_position_embeddings=64)),
            "roberta.encoder.layer.{L}.attention.output.dense", "roberta.encoder.layer.{L}.output.dense",
            "roberta.encoder.layer.{L}.attention.self.value.weight", (7, 2), causal=False,
        ),
    ]
}  # fmt: skip
MATRIX = ["gpt2", "gpt_neox", "llama", "qwen2", "gemma", "bert"]
DISCOVERY = ["mistral", "gemma2", "phi", "opt", "qwen3", "roberta"]


def tokens() -> torch.Tensor:
    return torch.randint(0, 47, (3, 6), generator=torch.Generator().manual_seed(1))


@functools.cache
def tokenizer_dir() -> str:
    """An offline word-level tokenizer saved to a folder (TL4 needs one loaded from disk)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(47)} | {"[UNK]": 47, "[PAD]": 48, "[BOS]": 49}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()  # type: ignore[assignment]
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]",
        eos_token="[BOS]",
    )  # fmt: skip
    folder = tempfile.mkdtemp(prefix="sc_interp_tok_")
    tok.save_pretrained(folder)
    return folder


def load_tokenizer() -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir())


def wrap(family: Family, wrapper: str) -> object:
    """The user's model: the plain HF model, an nnsight wrapper, or a TL4 bridge around it."""
    model = family.make()
    if wrapper == "hf":
        return model
    if wrapper == "nnsight":
        import warnings

        from nnsight import LanguageModel, NNsight

        if not family.causal:  # LanguageModel is for causal LMs
            return NNsight(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LanguageModel is deprecated in nnsight 0.8
            return LanguageModel(model, tokenizer=load_tokenizer())
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(
        tokenizer_dir(), hf_model=model, tokenizer=load_tokenizer()
    ).eval()


def module_of(model: object) -> nn.Module:
    return getattr(model, "_module", model)  # type: ignore[return-value]


def run(model: object, x: torch.Tensor) -> torch.Tensor:
    """Logits of any wrapper, computed the wrapper's own way."""
    if type(model).__module__.startswith("nnsight"):
        with model.trace(x):  # type: ignore[attr-defined]
            out = model.output.save()  # type: ignore[attr-defined]
    else:
        out = model(x)  # type: ignore[operator]
    return (out.logits if hasattr(out, "logits") else out).detach()
