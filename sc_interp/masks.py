"""MaskConfig, MaskSet and attach_masks: trainable masks on a frozen model.

A :class:`MaskSet` is an ``nn.Module`` that holds only mask logits (float32, one per
masked unit). Attaching it puts a parametrization on each masked weight (``unit="weight"``)
or a raw forward hook on each masked activation (``unit="neuron"``/``"head"``); detaching
takes all of it off again and leaves the model bit-identical to before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sc_interp import _hooks, _validate
from sc_interp._distributed import has_sharded_parameters, initialise_fsdp2
from sc_interp._freezing import freeze, release
from sc_interp._state import preserved
from sc_interp.adapters import resolve
from sc_interp.errors import AttachError, ConfigError, ScInterpError
from sc_interp.mask_config import (  # noqa: F401  (re-exported for imports from sc_interp.masks)
    MAX_INIT,
    MaskConfig,
    config_sites,
    exact_config,
    list_sites,
    model_sites,
)
from sc_interp.relax import Relaxation, get_relaxation, hard_mask
from sc_interp.sites import Site, expand_to_activation

Replacement = Callable[[Tensor], Tensor]


class MaskLogits(nn.Parameter):
    """A parameter whose ``.data`` shares its version counter.

    ``param.data`` normally returns a tensor with a separate version counter, so edits like
    ``masks.logits[name].data[:8] = -1`` (common in notebooks) would be invisible to the
    evaluation cache. Here ``.data`` is ``detach()``, which shares the counter, so every
    in-place edit is seen on the next forward. Assigning ``.data`` works as usual.
    """

    @property
    def data(self) -> Tensor:  # type: ignore[override]
        return self.detach()

    @data.setter
    def data(self, value: Tensor) -> None:
        torch.Tensor.data.__set__(self, value)  # type: ignore[attr-defined]


class MaskSet(nn.Module):
    """Mask logits attached to a model; an ``nn.Module`` holding only those logits.

    Create one with :func:`attach_masks`. ``masks.train()`` gives soft masks,
    ``masks.eval()`` hard 0/1 masks; the model's own ``train()``/``eval()`` never change
    this mode. Use as a context manager to detach on exit.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> with attach_masks(net, MaskConfig(unit="neuron", targets=["0"])) as masks:
        ...     _ = masks.eval()
        ...     _ = net(torch.zeros(1, 3))
        >>> list(masks.logits)
        ['0']
    """

    def __init__(self, root: nn.Module, sites: list[Site], config: MaskConfig, seed: int = 0):
        super().__init__()
        self.config = config
        self.sites: dict[str, Site] = {s.name: s for s in sites}
        self.relaxation: Relaxation = get_relaxation(config.relaxation)
        self.beta = 1.0
        self.generator = torch.Generator().manual_seed(seed)
        self._params = nn.ParameterList(
            MaskLogits(torch.full(site.shape, float(config.init), device=_site_device(root, site)))
            for site in sites
        )
        self._by_name: dict[str, nn.Parameter] = dict(zip(self.sites, self._params, strict=True))
        self._root = [root]  # a list, so the model is not registered as a submodule
        self._disabled = False
        self._attached = False
        self._replacements: dict[str, Tensor | Replacement] = {}
        self._hard_cache: dict[str, tuple[int, Tensor]] = {}
        self._weight_cache: dict[str, tuple[tuple[Any, ...], Tensor, Tensor, Tensor]] = {}
        self._handles: list[_hooks.Handle] = []
        self._edge_runtimes: dict[str, Any] = {}  # edge sites: model path -> EdgeRuntime
        self._recorded: dict[str, tuple[Tensor, int, float, Tensor | None]] | None = None

    # ----------------------------------------------------------------- views
    @property
    def logits(self) -> dict[str, nn.Parameter]:
        """Mask logits keyed by site name, in forward order (edit in place freely)."""
        return dict(self._by_name)

    @property
    def model(self) -> nn.Module:
        """The torch module the masks are attached to."""
        return self._root[0]

    @property
    def attached(self) -> bool:
        """Whether the masks currently act on the model."""
        return self._attached

    def hard(self) -> dict[str, torch.Tensor]:
        """Hard 0/1 masks (``logits > 0``) keyed by site name, as bool tensors."""
        return {name: hard_mask(p.detach()) for name, p in self.logits.items()}

    def density(self) -> float:
        """Fraction of units kept by the hard mask."""
        kept = sum(int(m.sum()) for m in self.hard().values())
        total = sum(p.numel() for p in self._params)
        return kept / max(total, 1)

    def l0(self, normalize: bool = False) -> Tensor:
        """The L0 penalty: sum (or mean, ``normalize=True``) of the relaxed masks."""
        total = sum(self.relaxation.density(p, self.beta).sum() for p in self._params)
        assert isinstance(total, Tensor)
        if normalize:
            return total / sum(p.numel() for p in self._params)
        return total

    @contextlib.contextmanager
    def step(self) -> Iterator[TrainingStep]:
        """One training step: the L0 penalty reuses the soft masks the forward computed.

        With continuous sparsification the training mask *is* the L0 density, so
        ``step.l0()`` sums the masks the forward already built instead of computing a
        second sigmoid (and its backward) over every mask entry. Sites the forward did not
        reach, and other relaxations, fall back to :meth:`l0`.

        Example:
            >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
            >>> with attach_masks(net, MaskConfig(unit="neuron")) as masks:
            ...     with masks.step() as step:
            ...         loss = net(torch.ones(1, 3)).sum() + 1e-3 * step.l0()
            ...     loss.backward()
        """
        previous, self._recorded = self._recorded, {}
        try:
            yield TrainingStep(self, self._recorded)
        finally:
            self._recorded = previous

    def mask(self, name: str) -> Tensor:
        """The mask now in force at site ``name`` (soft in train mode, 0/1 in eval)."""
        logits = self._by_name[name]
        if self.training:
            mask = self.relaxation.mask(
                logits, training=True, beta=self.beta, generator=self.generator
            )
            if self._recorded is not None:
                self._recorded[name] = (mask, logits._version, self.beta, None)
            return mask
        # cached until the logits are edited: every in-place edit bumps ``_version``, also
        # through ``logits.data`` (see MaskLogits)
        cached = self._hard_cache.get(name)
        if cached is None or cached[0] != logits._version:
            cached = (logits._version, hard_mask(logits.detach()).to(logits.dtype))
            self._hard_cache[name] = cached
        return cached[1]

    # ------------------------------------------------------------ application
    def _masked_weight(self, name: str, weight: Tensor, cache: bool = True) -> Tensor:
        if self._disabled:
            return weight
        replacement = self._replacements.get(name)
        if self.training and replacement is None:
            return self._fused_weight(name, weight)
        cacheable = (
            cache and not self.training and not (torch.is_grad_enabled() and weight.requires_grad)
        )
        hard = self.mask(name)
        if cacheable:
            # ``model.to(...)`` may swap a parameter's data without bumping its version
            key = (weight._version, id(replacement), weight.device, weight.dtype)
            cached = self._weight_cache.get(name)
            # the entry holds ``weight`` and the hard mask it used, so identity checks are
            # safe (their ids cannot be reused while the cache keeps them alive)
            if (
                cached is not None
                and cached[0] == key
                and cached[2] is weight
                and cached[3] is hard
            ):
                return cached[1]
        mask = hard.to(device=weight.device, dtype=weight.dtype)
        out = weight * mask
        if isinstance(replacement, Tensor):
            out = out + (1 - mask) * replacement.to(weight.device, weight.dtype)
        if cacheable:
            self._weight_cache[name] = (key, out, weight, hard)  # type: ignore[possibly-undefined]
        return out

    def _fused_weight(self, name: str, weight: Tensor) -> Tensor:
        """Training: the masked weight and its mask in one fused autograd node."""
        logits = self._by_name[name]
        if logits.device != weight.device:
            logits_here = logits.to(weight.device)
        else:
            logits_here = logits
        if self._recorded is None:
            out, _ = self.relaxation.masked_weight(
                weight, logits_here, self.beta, generator=self.generator
            )
            return out
        # in a training step: the L0 penalty takes the mask's sum from the same node
        out, mask, total = self.relaxation.masked_weight_and_density(
            weight, logits_here, self.beta, generator=self.generator
        )
        self._recorded[name] = (mask, logits._version, self.beta, total)
        return out

    def _masked_activation(self, name: str, output: Tensor) -> Tensor:
        if self._disabled:
            return output
        site = self.sites[name]
        mask = self.mask(name).to(device=output.device)
        full = expand_to_activation(mask, site, output)
        out = output * full
        replacement = self._replacements.get(name)
        if replacement is not None:
            value = replacement(output) if callable(replacement) else replacement
            out = out + (1 - full) * value.to(output.device, output.dtype)
        return out

    def set_replacement(self, name: str, replacement: Tensor | Replacement | None) -> None:
        """What a removed unit at ``name`` becomes instead of zero (for ablations).

        For weight sites a tensor of the weight's shape; for activation sites a tensor
        broadcastable to the activation, or a function of the activation.
        """
        if name not in self.sites:
            raise ConfigError(f"no site {name!r} in this MaskSet; sites: {list(self.sites)}")
        if replacement is None:
            self._replacements.pop(name, None)
        else:
            self._replacements[name] = replacement
        self._weight_cache.pop(name, None)

    @contextlib.contextmanager
    def disabled(self) -> Iterator[MaskSet]:
        """Run the unmasked model inside the block, without detaching."""
        previous, self._disabled = self._disabled, True
        try:
            yield self
        finally:
            self._disabled = previous

    # ------------------------------------------------------------- lifecycle
    def detach(self) -> None:
        """Remove every hook and parametrization; the model is as before attaching.

        Parameters, state_dict keys (and their order), ``requires_grad`` flags and
        train/eval flags are all restored. Calling it again does nothing.
        """
        if not self._attached:
            return
        self._attached = False
        try:
            _hooks.remove_all(self._handles)
        finally:
            self._handles = []
            self._edge_runtimes = {}
        self._weight_cache.clear()
        release(self.model)

    def save(self, path: str | Path) -> Path:
        """Save the logits and config as safetensors with a model fingerprint.

        Load them back onto the same model with :func:`sc_interp.load_masks`.
        """
        from sc_interp._persist import save_masks

        return save_masks(self, path)

    def __enter__(self) -> MaskSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def extra_repr(self) -> str:
        n = sum(p.numel() for p in self._params)
        mode = "train (soft)" if self.training else "eval (hard)"
        state = "attached" if self._attached else "detached"
        return (
            f"unit={self.config.unit!r}, relaxation={self.relaxation.name!r}, sites={len(self.sites)}, "
            f"units={n}, density={self.density():.3f}, mode={mode}, {state}"
        )

    def __repr__(self) -> str:
        lines = [f"MaskSet({self.extra_repr()})"]
        for name, p in list(self.logits.items())[:12]:
            kept = int((p > 0).sum())
            lines.append(f"  {name}: {tuple(p.shape)} kept {kept}/{p.numel()}")
        if len(self.sites) > 12:
            lines.append(f"  ... {len(self.sites) - 12} more sites")
        return "\n".join(lines)


class TrainingStep:
    """Handle of :meth:`MaskSet.step`: the L0 penalty of this step's forward."""

    def __init__(
        self, masks: MaskSet, recorded: dict[str, tuple[Tensor, int, float, Tensor | None]]
    ):
        self.masks = masks
        self.recorded = recorded

    def l0(self, normalize: bool = False) -> Tensor:
        """Sum (or mean) of the relaxed masks, reusing the forward's soft masks if valid."""
        masks = self.masks
        reusable = masks.relaxation.name == "continuous"
        parts = []
        for name, logits in masks._by_name.items():
            entry = self.recorded.get(name)
            if reusable and entry is not None and entry[1:3] == (logits._version, masks.beta):
                total = entry[3]  # summed in the forward's fused node, when it could be
                parts.append(entry[0].sum() if total is None else total)
            else:
                parts.append(masks.relaxation.density(logits, masks.beta).sum())
        total = sum(parts[1:], parts[0])
        if normalize:
            return total / sum(p.numel() for p in masks._params)
        return total


def _site_device(root: nn.Module, site: Site) -> torch.device:
    module = root.get_submodule(site.module) if site.module else root
    for t in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
        return t.device
    for t in root.parameters():
        return t.device
    return torch.device("cpu")


def _has_sites(root: nn.Module, unit: str) -> bool:
    try:
        return bool(list_sites(root, unit))
    except ScInterpError:  # e.g. edges on a TransformerLens model they do not support
        return False


def attach_masks(
    model: object, config: MaskConfig, *, seed: int = 0, stack: bool = False
) -> MaskSet:
    """Attach trainable masks to ``model`` and freeze its parameters.

    Args:
        model: a torch module, TransformerLens model or nnsight wrapper.
        config: what to mask (:class:`MaskConfig`).
        seed: seeds the MaskSet's generator (hard-concrete sampling).
        stack: allow sites that already carry another MaskSet's masks (both then act;
            :func:`sc_interp.ablate` uses it with the other MaskSet disabled).

    Returns:
        The attached :class:`MaskSet` (also a context manager that detaches on exit).

    Raises:
        TargetError: a target pattern matches no site (the message lists the sites).
        AttachError: a selected site already carries sc-interp masks.
        UnsupportedModelError: the model is not of a supported family.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> masks = attach_masks(net, MaskConfig(unit="weight"))
        >>> sorted(masks.logits)
        ['0.weight', '2.weight']
        >>> masks.detach()
    """
    if not isinstance(config, MaskConfig):
        raise ConfigError(f"config must be a MaskConfig, got {type(config).__name__}")
    root = resolve(model)
    available = list_sites(root, config.unit)
    if not available:
        raise ConfigError(
            f"the model has no {config.unit!r} sites; units with sites here: "
            f"{[u for u in ('weight', 'neuron', 'head', 'edge') if _has_sites(root, u)]}"
        )
    sites = config_sites(available, config)
    taken = [] if stack else [s.name for s in sites if _hooks.is_masked(root, s)]
    if taken:
        raise AttachError(
            f"site(s) {taken} already carry sc-interp masks; detach the other MaskSet first"
        )
    seed = _validate.integer("seed", seed, minimum=0, maximum=2**63 - 1)
    masks = MaskSet(root, sites, config, seed=seed)
    with preserved(root, train_flags=False):
        masks._attached = True
        try:
            freeze(root)
            if config.unit == "weight" and has_sharded_parameters(root):
                initialise_fsdp2(root)
            for site in sites:
                masks._handles.append(_hooks.install(root, site, masks))
        except BaseException:
            masks.detach()
            raise
    return masks
