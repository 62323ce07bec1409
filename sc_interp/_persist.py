"""Saving, loading and baking masks.

Mask files are safetensors only: the logits keyed by site name, plus metadata (library
version, mask config, site names, model fingerprint). Nothing is ever unpickled.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sc_interp import _hooks
from sc_interp._freezing import original_requires_grad
from sc_interp.adapters import resolve
from sc_interp.errors import ConfigError, MaskFileError
from sc_interp.masks import MaskConfig, MaskSet, attach_masks
from sc_interp.sites import model_fingerprint

FORMAT = "sc-interp.masks/1"
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol >= 2; torch.save zip archives


def version() -> str:
    """The sc-interp version (``sc_interp.__version__``, also the distribution's metadata)."""
    import sc_interp  # not at module level: sc_interp/__init__.py imports this module

    return sc_interp.__version__


def write_safetensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]
) -> Path:
    """Write ``tensors`` with JSON-encoded ``metadata`` to a safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: json.dumps(v) for k, v in metadata.items()}
    # write beside the target and rename, so a failure never leaves a half-written file
    # where the user's previous one was
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file written by :func:`write_safetensors`; refuse anything else."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise MaskFileError(f"no such mask file: {path}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw_meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        # only now look at the first bytes: a valid file's header length can start with 0x80
        with path.open("rb") as f:
            head = f.read(8)
        if head.startswith(_PICKLE_MAGIC):
            raise MaskFileError(
                f"{path} looks like a pickle/torch.save file; sc-interp never unpickles files "
                "(they can run arbitrary code). Save masks with MaskSet.save / Subnetwork.save."
            ) from None
        raise MaskFileError(f"{path} is not a valid safetensors file: {exc}") from None
    try:
        meta = {k: json.loads(v) for k, v in raw_meta.items()}
    except json.JSONDecodeError as exc:
        raise MaskFileError(f"{path}: metadata is not sc-interp's ({exc})") from None
    return tensors, meta


def save_masks(masks: MaskSet, path: str | Path) -> Path:
    """Save a MaskSet's logits and config as safetensors (see :meth:`MaskSet.save`)."""
    meta = {
        "format": FORMAT,
        "version": version(),
        "config": masks.config.to_dict(),
        "sites": list(masks.sites),
        "fingerprint": model_fingerprint(masks.model),
    }
    return write_safetensors(path, dict(masks.logits), meta)


def check_mask_file(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path, root: nn.Module
) -> MaskConfig:
    """Validate a mask file against ``root``; return its MaskConfig."""
    if meta.get("format") != FORMAT:
        raise MaskFileError(f"{path} is not an sc-interp mask file (format {meta.get('format')!r})")
    expected = model_fingerprint(root)
    if meta.get("fingerprint") != expected:
        raise MaskFileError(
            f"{path} was made for another model (fingerprint {meta.get('fingerprint')} != "
            f"{expected}: parameter names or shapes differ)"
        )
    try:
        config = MaskConfig(**meta["config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise MaskFileError(f"{path}: bad mask config in metadata ({exc})") from None
    missing = [s for s in meta.get("sites", []) if s not in tensors]
    if missing:
        raise MaskFileError(f"{path}: metadata names sites with no tensor: {missing}")
    return config


def load_masks(model: object, path: str | Path) -> MaskSet:
    """Attach the masks saved at ``path`` to ``model`` (which must match the fingerprint).

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4))
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "m.safetensors")
        >>> with attach_masks(net, MaskConfig(unit="neuron")) as m:
        ...     _ = m.save(f)
        >>> load_masks(net, f).detach()
    """
    path = Path(path)
    tensors, meta = read_safetensors(path)
    root = resolve(model)
    config = check_mask_file(tensors, meta, path, root)
    config = MaskConfig(**{**config.to_dict(), "targets": list(meta["sites"])})
    masks = attach_masks(root, config)
    try:
        for name, param in masks.logits.items():
            if tuple(tensors[name].shape) != tuple(param.shape):
                raise MaskFileError(
                    f"{path}: site {name!r} has shape {tuple(tensors[name].shape)}, the model "
                    f"needs {tuple(param.shape)}"
                )
            with torch.no_grad():
                param.copy_(tensors[name])
    except BaseException:
        masks.detach()
        raise
    return masks


def bake(model: object, masks: MaskSet) -> nn.Module:
    """A copy of ``model`` with the hard mask's complement zeroed and no hooks.

    Weight masks are multiplied into the weights; neuron/head masks zero the weights
    that produce (or solely read) each removed unit, which gives the same outputs.
    The original model and its masks are unchanged.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> with attach_masks(net, MaskConfig(unit="neuron", init=-1.0, targets=["0"])) as m:
        ...     baked = bake(net, m)
        >>> bool(baked[0].weight.abs().sum() == 0)
        True
    """
    root = resolve(model)
    if masks.model is not root or not masks.attached:
        raise ConfigError("bake needs a MaskSet that is attached to this model")
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
    with torch.no_grad():
        for name, site in masks.sites.items():
            if site.kind == "param":
                owner = clone.get_submodule(site.module) if site.module else clone
                getattr(owner, site.attr or "").copy_(weights[name])
            for path, attr, axis in site.bake:
                tensor = getattr(clone.get_submodule(path) if path else clone, attr)
                keep = _fit(hard[name], tensor.shape[axis]).to(tensor.device, tensor.dtype)
                shape = [1] * tensor.ndim
                shape[axis] = -1
                tensor.mul_(keep.view(shape))
    # the copy was taken while attach_masks had frozen the model: give it the user's flags
    flags = original_requires_grad(root)
    for name, p in clone.named_parameters():
        p.requires_grad_(flags.get(name, p.requires_grad))
    return clone


def _copy_without_parametrizations(root: nn.Module, masks: MaskSet) -> nn.Module:
    # Parametrized modules share a generated class, so a deep copy of one cannot be
    # un-parametrized without breaking the original: take ours off, copy, put them back.
    weight_handles = [h for h in masks._handles if h.site.kind == "param"]
    _hooks.remove_all(weight_handles)
    try:
        return copy.deepcopy(root, memo={id(masks): masks})
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
