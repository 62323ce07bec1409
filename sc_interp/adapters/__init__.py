"""Adapters: one small module per model family, each only says which sites exist.

:func:`resolve` unwraps wrappers (nnsight) to the torch module that actually runs, and
:func:`find_sites` lists a model's mask sites in forward order for one unit kind.

Site names are the toolkit's own:

- plain PyTorch (:mod:`~sc_interp.adapters.torch`): module paths (``fc1``, ``fc1.weight``);
  neurons are the output units of ``Linear``/``Conv``/``Conv1D`` layers.
- Hugging Face models of a known family (:mod:`~sc_interp.adapters.hf`: GPT-2,
  GPT-NeoX/Pythia, Llama, Mistral, Qwen2/3, Gemma/Gemma2, Phi, OPT, BERT/RoBERTa), plain
  or under nnsight (nnsight wraps the same module, so the names are the same): module
  paths of the projections. ``head``: the attention output projection, masking each
  query head's slice of its input; ``neuron``: the MLP down projection, masking its input
  (the hidden units, after the gate in gated MLPs); ``weight``: the attention and MLP
  matrices, with embeddings and ``lm_head`` listed but masked only when a target names
  them (``Site.default`` is False). Unknown families fall back to plain PyTorch sites
  with a warning.
- TransformerLens (:mod:`~sc_interp.adapters.transformer_lens`): hook and parameter
  names (``blocks.0.attn.hook_z``, ``blocks.0.mlp.hook_post``, ``blocks.0.attn.W_Q``,
  ``blocks.0.attn.q.weight``). A TL 4 bridge around a Hugging Face model renames and
  re-wraps its modules (``blocks.0.attn.o`` wraps ``transformer.h.0.attn.c_proj``; on GPT-2
  the fused ``c_attn`` is split into ``attn.q|k|v``), so its names differ from the plain
  model's: they are the names TransformerLens users know, and the bridge's forward runs
  through them.
"""

from __future__ import annotations

from torch import nn

from sc_interp._distributed import refuse_fsdp1
from sc_interp.adapters import nnsight as _nnsight
from sc_interp.adapters import torch as _torch
from sc_interp.errors import UnsupportedModelError
from sc_interp.sites import Site, check_unit


def resolve(model: object) -> nn.Module:
    """The ``torch.nn.Module`` that runs ``model`` (unwrapping nnsight's ``NNsight``).

    A ``DistributedDataParallel`` wrapper (what ``accelerate``'s ``prepare`` returns in a
    multi-process run) is unwrapped to its ``.module``, so site names, mask files and
    fingerprints are the plain model's (no ``module.`` prefix).

    Raises:
        UnsupportedModelError: ``model`` is neither a torch module nor a supported wrapper.
    """
    if _nnsight.is_nnsight(model):
        return _nnsight.unwrap(model)
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return resolve(model.module)
    if isinstance(model, nn.Module):
        return model
    raise UnsupportedModelError(
        f"cannot attach masks to a {type(model).__module__}.{type(model).__qualname__}; "
        "supported: torch.nn.Module (plain PyTorch), TransformerLens HookedTransformer / "
        "TransformerBridge, nnsight NNsight / LanguageModel"
    )


def find_sites(model: object, unit: str) -> list[Site]:
    """All mask sites of ``unit`` kind in ``model``, in forward order.

    Raises:
        UnsupportedModelError: ``model`` is not supported, or is wrapped in FSDP1
            ``FullyShardedDataParallel`` (use FSDP2's ``fully_shard``).

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> [s.name for s in find_sites(net, "neuron")]
        ['0', '2']
    """
    check_unit(unit)
    root = resolve(model)
    refuse_fsdp1(root)
    return _torch.sites(root, unit)
