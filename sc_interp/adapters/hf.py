"""Hugging Face transformers adapter: sites from the model's config, in its own module names.

Plain models (``PreTrainedModel``) and the same models under nnsight (which unwraps to
them) get the same sites with the same names, the module paths of the projections:

============  ====================================================  ======================
unit          site (example: Llama)                                 what is masked
============  ====================================================  ======================
``head``      ``model.layers.{L}.self_attn.o_proj``                 the head's slice of the
                                                                    output projection's
                                                                    input (query heads)
``neuron``    ``model.layers.{L}.mlp.down_proj``                    the MLP hidden units:
                                                                    the down projection's
                                                                    input
``weight``    ``model.layers.{L}.self_attn.q_proj.weight``, ...     attention and MLP
                                                                    matrices (listed, not
                                                                    masked by default:
                                                                    embeddings, lm_head)
============  ====================================================  ======================

Projection per family (see :mod:`sc_interp.adapters.hf_families`): heads read
``attn.c_proj`` (GPT-2), ``attention.dense`` (GPT-NeoX/Pythia), ``self_attn.o_proj``
(Llama, Mistral, Qwen2/3, Gemma/Gemma2), ``self_attn.dense`` (Phi), ``self_attn.out_proj``
(OPT), ``attention.output.dense`` (BERT/RoBERTa); neurons read ``mlp.c_proj``,
``mlp.dense_4h_to_h``, ``mlp.down_proj`` (gated MLPs: after ``act(gate) * up``),
``mlp.fc2``, ``fc2``, ``output.dense``. A head owns ``head_dim`` consecutive input features
of the projection, so under grouped-query attention head masks are over the query heads.

Sizes come from the config (``num_hidden_layers``, ``num_attention_heads``,
``num_key_value_heads``, ``head_dim``, the MLP width) and are checked against the modules;
a family without an entry, or whose modules do not match its config, falls back to the
generic torch adapter with a warning naming the entry to write. transformers is never
imported here: models are recognised by class.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from typing import Any

from torch import nn

from sc_interp.adapters._layout import weight_axes, weight_of
from sc_interp.adapters.hf_families import FAMILIES, Family
from sc_interp.sites import Site, UnitMap

log = logging.getLogger(__name__)
_ORDER = ("q", "k", "v", "qkv", "o", "gate", "up", "down")


def is_hf(model: nn.Module) -> bool:
    """True for a transformers ``PreTrainedModel`` (recognised without importing it)."""
    return any(
        cls.__name__ == "PreTrainedModel" and cls.__module__.startswith("transformers")
        for cls in type(model).__mro__
    )


def text_config(model: nn.Module) -> Any:
    """The model's (text) config: ``config.get_text_config()`` where it exists."""
    cfg = getattr(model, "config", None)
    get_text = getattr(cfg, "get_text_config", None)
    return get_text() if callable(get_text) else cfg


@dataclass(frozen=True)
class Dims:
    """Architecture facts read from a Hugging Face config."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_mlp: int
    d_model: int


def dims(model: nn.Module) -> Dims | None:
    """Sizes of a supported Hugging Face model from its config (``None`` otherwise).

    ``head_dim`` is the config's own where it has one (Gemma's differs from
    ``hidden_size // num_attention_heads``).
    """
    cfg = text_config(model)
    family = FAMILIES.get(str(getattr(cfg, "model_type", "")))
    if family is None:
        return None
    try:
        n_heads = int(cfg.num_attention_heads)
        d_model = int(cfg.hidden_size)
        head_dim = getattr(cfg, "head_dim", None) or d_model // n_heads
        n_kv = getattr(cfg, "num_key_value_heads", None) or n_heads
        return Dims(
            int(cfg.num_hidden_layers),
            n_heads,
            int(n_kv),
            int(head_dim),
            family.d_mlp(cfg),
            d_model,
        )
    except (AttributeError, TypeError, ValueError):
        return None


def _layers(model: nn.Module, family: Family) -> dict[int, str]:
    pattern = re.compile(rf"(?:^|.*\.){family.layer}$")
    found: dict[int, str] = {}
    for path, _ in model.named_modules():
        if match := pattern.fullmatch(path):
            found.setdefault(int(match[1]), path)
    return found


def _expected_out(role: str, d: Dims) -> int | None:
    heads = d.n_heads * d.head_dim
    kv = d.n_kv_heads * d.head_dim
    return {
        "q": heads,
        "k": kv,
        "v": kv,
        "qkv": heads + 2 * kv,
        "gate": d.d_mlp,
        "up": d.d_mlp,
    }.get(role)


def _expected_in(role: str, d: Dims) -> int | None:
    return {"o": d.n_heads * d.head_dim, "down": d.d_mlp}.get(role)


def _unit_map(role: str, layer: int, axes: tuple[int, int], d: Dims, family: Family) -> UnitMap:
    out_axis, in_axis = axes
    if role == "q":
        return UnitMap("head", layer, out_axis, d.head_dim)
    if role in ("k", "v"):
        return UnitMap("head", layer, out_axis, d.head_dim, share=d.n_heads // d.n_kv_heads)
    if role == "qkv" and family.qkv_layout == "interleaved":
        return UnitMap("head", layer, out_axis, 3 * d.head_dim)
    if role == "qkv":
        return UnitMap("head", layer, out_axis, d.head_dim, sections=3)
    if role == "o":
        return UnitMap("head", layer, in_axis, d.head_dim)
    return UnitMap("neuron", layer, in_axis if role == "down" else out_axis)


class _Mismatch(Exception):
    """The model's modules do not match its config / family entry."""


def _check(path: str, module: nn.Module | None, role: str, d: Dims) -> tuple[int, int]:
    if module is None:
        raise _Mismatch(f"no module {path!r}")
    axes = weight_axes(module)
    weight = weight_of(module)
    if axes is None or weight is None or weight.ndim != 2:
        raise _Mismatch(f"{path!r} is a {type(module).__name__}, not a Linear or Conv1D")
    for expected, axis, side in (
        (_expected_out(role, d), 0, "outputs"),
        (_expected_in(role, d), 1, "inputs"),
    ):
        if expected is not None and weight.shape[axes[axis]] != expected:
            raise _Mismatch(
                f"{path!r} has {weight.shape[axes[axis]]} {side}, the config implies {expected}"
            )
    if role == "qkv" and d.n_kv_heads != d.n_heads:
        raise _Mismatch("a fused qkv projection with grouped-query attention")
    return axes


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _layer_sites(
    modules: dict[str, nn.Module],
    family: Family,
    d: Dims,
    layer: int,
    path: str,
    unit: str,
    prefix: str,
) -> list[Site]:
    roles = {**family.attn, **family.mlp}
    axes = {}
    for role in _ORDER:
        if role in roles:
            full = f"{path}.{roles[role]}"
            axes[role] = _check(full, modules.get(full), role, d)
    if unit == "weight":
        found = []
        for role in _ORDER:
            if role in roles:
                full = _join(prefix, f"{path}.{roles[role]}")
                shape = tuple(weight_of(modules[f"{path}.{roles[role]}"]).shape)  # type: ignore[union-attr]
                units = _unit_map(role, layer, axes[role], d, family)
                found.append(Site(f"{full}.weight", "weight", shape, full, "weight", units=units))
        return found
    role = "o" if unit == "head" else "down"
    full = _join(prefix, f"{path}.{roles[role]}")
    n = d.n_heads if unit == "head" else d.d_mlp
    group = d.head_dim if unit == "head" else 1
    # zeroing the projection's input columns of a unit == zeroing the unit (bias unaffected)
    bake = ((full, "weight", axes[role][1]),)
    kind = "head" if unit == "head" else "neuron"
    return [
        Site(full, unit, (n,), full, None, -1, group, bake, io="input",  # type: ignore[arg-type]
             units=UnitMap(kind, layer))
    ]  # fmt: skip


def _embedding_sites(model: nn.Module, prefix: str, last: bool) -> list[Site]:
    """Embedding (first) or unembedding (last) weights: listed, masked only when targeted."""
    paths = {id(m): p for p, m in model.named_modules()}
    if last:
        try:
            head = model.get_output_embeddings()  # type: ignore[operator]
        except (AttributeError, NotImplementedError):
            head = None
        modules = [head] if isinstance(head, nn.Module) and id(head) in paths else []
    else:
        modules = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    found = []
    for module in modules:
        weight = weight_of(module)
        if weight is not None:
            full = _join(prefix, paths[id(module)])
            found.append(
                Site(f"{full}.weight", "weight", tuple(weight.shape), full, "weight", default=False)
            )
    return found


def sites(model: nn.Module, unit: str, prefix: str = "") -> list[Site] | None:
    """Sites of ``unit`` kind in a Hugging Face model, or ``None`` (with a warning) when
    this adapter does not know the family; the caller then uses the generic torch adapter.
    """
    cfg = text_config(model)
    model_type = str(getattr(cfg, "model_type", "?"))
    family, d = FAMILIES.get(model_type), dims(model)
    if family is None or d is None:
        return _fallback(model, model_type, "sc-interp has no entry for this family")
    if d.n_heads % d.n_kv_heads:
        return _fallback(model, model_type, f"{d.n_heads} heads over {d.n_kv_heads} kv heads")
    layers = _layers(model, family)
    if sorted(layers) != list(range(d.n_layers)):
        return _fallback(
            model, model_type, f"found layers {sorted(layers)}, the config has {d.n_layers}"
        )
    modules = dict(model.named_modules())
    try:
        found = [
            site
            for layer in range(d.n_layers)
            for site in _layer_sites(modules, family, d, layer, layers[layer], unit, prefix)
        ]
    except _Mismatch as exc:
        return _fallback(model, model_type, str(exc))
    if unit == "weight":
        found = _embedding_sites(model, prefix, last=False) + found
        found += _embedding_sites(model, prefix, last=True)
    return found


def note_untied(model: nn.Module) -> None:
    """Set ``tie_word_embeddings=False`` on Hugging Face models whose unembedding no longer
    shares the embedding's tensor (after :func:`sc_interp.bake` untied them), so that
    ``save_pretrained`` / ``from_pretrained`` do not tie them again."""
    for module in model.modules():
        cfg = getattr(module, "config", None)
        if not is_hf(module) or not getattr(cfg, "tie_word_embeddings", False):
            continue
        try:
            inp, out = module.get_input_embeddings(), module.get_output_embeddings()  # type: ignore[operator]
        except (AttributeError, NotImplementedError):
            continue
        if inp is not None and out is not None and out.weight is not inp.weight:
            cfg.tie_word_embeddings = False  # type: ignore[union-attr]


def _fallback(model: nn.Module, model_type: str, why: str) -> None:
    message = (
        f"no Hugging Face adapter for {type(model).__name__} (model_type {model_type!r}: {why}); "
        "using the generic torch adapter (weights and Linear output units, no heads). "
        f"Write one: add FAMILIES[{model_type!r}] = Family(...) in "
        "sc_interp/adapters/hf_families.py, naming its attention and MLP projections."
    )
    warnings.warn(message, UserWarning, stacklevel=4)
    log.warning(message)
    return None
