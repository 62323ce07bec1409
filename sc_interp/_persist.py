"""Saving, loading and baking masks.

Mask files are safetensors only: the logits keyed by site name, plus metadata (library
version, mask config, site names, model fingerprint). Nothing is ever unpickled.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sc_interp import _hooks, _safetensors, _validate
from sc_interp._freezing import original_requires_grad
from sc_interp._safetensors import meta_field, site_names, version
from sc_interp.adapters import hf as _hf
from sc_interp.adapters import resolve
from sc_interp.errors import ConfigError, MaskFileError
from sc_interp.masks import MaskConfig, MaskSet, attach_masks, exact_config, model_sites
from sc_interp.sites import model_fingerprint
from sc_interp.subnetwork import Subnetwork, file_config

FORMAT = "sc-interp.masks/1"
log = logging.getLogger(__name__)


def write_safetensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]
) -> Path:
    """Write ``tensors`` with JSON-encoded ``metadata`` to a safetensors file."""
    return _safetensors.write(path, tensors, metadata)


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file written by :func:`write_safetensors`; refuse anything else.

    The file is recognised by its structure (see :mod:`sc_interp._safetensors`), never by
    its first byte, and nothing is ever unpickled.
    """
    return _safetensors.read(path)


def save_masks(masks: MaskSet, path: str | Path) -> Path:
    """Save a MaskSet's logits and config as safetensors (see :meth:`MaskSet.save`)."""
    path = _validate.writable_file("path", path)
    meta = {
        "format": FORMAT,
        "version": version(),
        "config": masks.config.to_dict(),
        "sites": list(masks.sites),
        "fingerprint": model_fingerprint(masks.model),
        # which circuit units each site's entries belong to (read by `sc-interp compare`)
        "units": {n: s.units.to_dict() for n, s in masks.sites.items() if s.units is not None},
    }
    return write_safetensors(path, dict(masks.logits), meta)


def check_mask_file(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path, root: nn.Module
) -> MaskConfig:
    """Validate a mask file against ``root``; return its MaskConfig."""
    if meta.get("format") != FORMAT:
        raise MaskFileError(f"{path} is not an sc-interp mask file (format {meta.get('format')!r})")
    recorded = meta_field(meta, "fingerprint", str, path)
    expected = model_fingerprint(root)
    if recorded != expected:
        raise MaskFileError(
            f"{path} was made for another model (fingerprint {recorded} != "
            f"{expected}: parameter names or shapes differ)"
        )
    config = file_config(meta, path)
    site_names(meta, tensors, path)
    return config


def load_masks(model: object, path: str | Path) -> MaskSet:
    """Attach the masks saved at ``path`` to ``model`` (which must match the fingerprint).

    Raises:
        MaskFileError: the file is missing, not a safetensors file, not sc-interp's, made
            for another model, or its metadata is malformed.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4))
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "m.safetensors")
        >>> with attach_masks(net, MaskConfig(unit="neuron")) as m:
        ...     _ = m.save(f)
        >>> load_masks(net, f).detach()
    """
    path = _validate.path("path", path, error=MaskFileError)
    root = resolve(model)
    tensors, meta = read_safetensors(path)
    config = check_mask_file(tensors, meta, path, root)
    names = site_names(meta, tensors, path)
    sites = model_sites(root, config)
    missing = [n for n in names if n not in sites]
    if missing:
        raise MaskFileError(f"{path}: sites {missing[:5]} do not exist in this model")
    for name in names:
        if tuple(tensors[name].shape) != tuple(sites[name].shape):
            raise MaskFileError(
                f"{path}: site {name!r} has shape {tuple(tensors[name].shape)}, the model "
                f"needs {tuple(sites[name].shape)}"
            )
    # saved names are matched exactly, never re-read as glob patterns
    masks = attach_masks(root, exact_config(config, names))
    try:
        with torch.no_grad():
            for name, param in masks.logits.items():
                param.copy_(tensors[name])
    except BaseException:
        masks.detach()
        raise
    return masks


def bake(model: object, masks: MaskSet | Subnetwork | dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` with the hard mask's complement zeroed and no hooks.

    Weight masks are multiplied into the weights; neuron/head masks zero the weights
    that produce (or solely read) each removed unit, along the axis the module's real
    layout gives (``nn.Linear`` ``[out, in]``, Hugging Face ``Conv1D`` ``[in, out]``),
    which gives the same outputs. The original model and its masks are unchanged.

    Tied parameters: a tensor that another module shares (GPT-2's and Gemma's ``lm_head``
    is the token embedding) is untied in the copy before it is edited, so baking a mask
    on the unembedding never edits the embedding; the copy's Hugging Face config then
    says ``tie_word_embeddings=False``, so saving and reloading it keeps them apart.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> with attach_masks(net, MaskConfig(unit="neuron", init=-1.0, targets=["0"])) as m:
        ...     baked = bake(net, m)
        >>> bool(baked[0].weight.abs().sum() == 0)
        True
    """
    root = resolve(model)
    if isinstance(masks, dict):
        masks = Subnetwork.from_masks(root, masks)
    if isinstance(masks, Subnetwork):
        with masks.attach(root) as attached:
            return bake(root, attached)
    if not isinstance(masks, MaskSet):
        raise ConfigError(
            f"bake takes a MaskSet attached to the model, a Subnetwork or a {{site: bool mask}} "
            f"dict, got {type(masks).__name__}"
        )
    if masks.model is not root or not masks.attached:
        raise ConfigError("bake needs a MaskSet that is attached to this model")
    if masks.config.unit == "edge":
        raise ConfigError(
            "bake cannot turn edge masks into weights (an edge is a path between two "
            "components, not a slice of a weight); bake takes weight, neuron and head masks. "
            "Run edge subnetworks inside ablate(...)/isolate(...) or with the masks attached"
        )
    replaced = [n for n, s in masks.sites.items() if s.kind != "param" and n in masks._replacements]
    if replaced:
        raise ConfigError(
            f"sites {replaced[:3]} replace removed units with other activations (mean/resample "
            "ablation); a copy of the weights can only zero them. Bake the plain masks, or run "
            "the model inside ablate(...)/isolate(...)"
        )
    was_training = masks.training
    masks.eval()
    try:
        hard = masks.hard()
        weights = {}
        with torch.no_grad():
            for h in masks._handles:
                if h.site.kind == "param":
                    weights[h.site.name] = getattr(h.module, h.site.attr or "").detach().clone()
        clone = _copy_without_parametrizations(root, masks)
    finally:
        masks.train(was_training)
    _hooks.strip_activation_hooks(clone)
    names = {id(p): n for n, p in clone.named_parameters()}
    tensors = _Tensors(clone)
    with torch.no_grad():
        for name, site in masks.sites.items():
            if site.kind == "param":
                tensors.own(site.module, site.attr or "").copy_(weights[name])
            for path, attr, axis in site.bake:
                tensor = tensors.own(path, attr)
                keep = _fit(hard[name], tensor.shape[axis]).to(tensor.device, tensor.dtype)
                shape = [1] * tensor.ndim
                shape[axis] = -1
                tensor.mul_(keep.view(shape))
    if tensors.untied:
        _hf.note_untied(clone)
    # the copy was taken while attach_masks had frozen the model: give it the user's flags
    flags = original_requires_grad(root)
    for name, p in clone.named_parameters():
        source = names.get(tensors.untied.get(id(p), id(p)), name)
        p.requires_grad_(flags.get(name, flags.get(source, p.requires_grad)))
    return clone


class _Tensors:
    """Tensors of a model's copy that bake may edit, untied first where they are shared.

    A tensor is shared when another module or attribute holds it or a view of its storage
    (tied embeddings: GPT-2's ``lm_head.weight is transformer.wte.weight``; a bridge's
    ``attn.q`` weight viewing GPT-2's fused ``c_attn``). Editing it in place would edit
    the other holder too, so it gets its own copy first.
    """

    def __init__(self, root: nn.Module):
        self.root = root
        self.holders: dict[int, set[tuple[int, str]]] = {}
        for module in root.modules():
            for attr, t in [*module._parameters.items(), *module._buffers.items()]:
                if t is not None and t.numel():
                    key = t.untyped_storage().data_ptr()
                    self.holders.setdefault(key, set()).add((id(module), attr))
        self.untied: dict[int, int] = {}  # id(new parameter) -> id(the one it was copied from)

    def own(self, path: str, attr: str) -> torch.Tensor:
        module = self.root.get_submodule(path) if path else self.root
        tensor = getattr(module, attr)
        key = tensor.untyped_storage().data_ptr()
        if len(self.holders.get(key, ())) <= 1:
            return tensor
        copy_ = tensor.detach().clone()
        if isinstance(tensor, nn.Parameter):
            fresh = nn.Parameter(copy_, requires_grad=tensor.requires_grad)
            module._parameters[attr] = fresh
            self.untied[id(fresh)] = id(tensor)
        else:
            module._buffers[attr] = copy_
        self.holders[key].discard((id(module), attr))
        self.holders[copy_.untyped_storage().data_ptr()] = {(id(module), attr)}
        log.info("bake: untied %s.%s (shared with another module) in the copy", path, attr)
        return getattr(module, attr)


def _copy_without_parametrizations(root: nn.Module, masks: MaskSet) -> nn.Module:
    # Parametrized modules share a generated class, so a deep copy of one cannot be
    # un-parametrized without breaking the original: take ours off, copy, put them back.
    weight_handles = [h for h in masks._handles if h.site.kind == "param"]
    _hooks.remove_all(weight_handles)
    memo: dict[int, object] = {id(masks): masks}
    for module in root.modules():
        # tensors a module kept from a forward with gradients (the TL4 bridge keeps its
        # last attention pattern) cannot be deep-copied; copy them detached
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    try:
        return copy.deepcopy(root, memo=memo)
    finally:
        for i, h in enumerate(masks._handles):
            if h.site.kind == "param":
                masks._handles[i] = _hooks.install(root, h.site, masks)


def _fit(keep: torch.Tensor, size: int) -> torch.Tensor:
    if keep.numel() == size:
        return keep
    if size % keep.numel() == 0:
        return keep.repeat_interleave(size // keep.numel())
    raise ConfigError(f"cannot spread a mask of {keep.numel()} units over {size} features")
