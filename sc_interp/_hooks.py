"""The one place where sc-interp puts hooks and parametrizations on a model and takes them off.

Weight sites get a ``torch.nn.utils.parametrize`` parametrization (reversible, keeps the
original tensor object); activation sites get a raw torch forward hook on the module's
output, or a forward pre-hook on its input for ``Site.io == "input"`` (TransformerLens'
``reset_hooks()`` only removes hooks it registered itself, so ours survive it).
Removing restores the original parameter object and the module's parameter order, so
``state_dict`` keys come back in the same order.

Reading a parametrized weight goes through two module calls and several attribute lookups
(about 9 us); with six masked layers that is a measurable share of a small model's forward.
While our mask is the only parametrization on a weight, the weight's property reads the
original tensor and asks the MaskSet directly (about 2 us); anything else (another
parametrization stacked on ours, ``parametrize.cached()``, a sharded weight, a deep copy of
the model) takes torch's own path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn
from torch.nn.utils import parametrize

from sc_interp._distributed import is_sharded

if TYPE_CHECKING:
    from sc_interp.masks import MaskSet
    from sc_interp.sites import Site


class WeightMask(nn.Module):
    """Parametrization ``weight -> masked weight``; holds its MaskSet without registering it."""

    def __init__(self, masks: MaskSet, name: str):
        super().__init__()
        # object.__setattr__: the MaskSet must not become a submodule of the user's model,
        # or its logits would show up in the model's parameters and state_dict.
        object.__setattr__(self, "masks", masks)
        self.site_name = name

    def forward(self, weight: Tensor) -> Tensor:
        if is_sharded(weight):
            # FSDP2 (fully_shard) writes its gathered weight into the module's _parameters
            # during forward, but parametrize reads our ``original``: the local shard. Gather
            # it ourselves (one all-gather per masked weight and forward; not cached, which
            # would keep a full copy of every masked weight alive).
            full = weight.full_tensor()  # type: ignore[attr-defined]
            return self.masks._masked_weight(self.site_name, full, cache=False)  # type: ignore[attr-defined]
        return self.masks._masked_weight(self.site_name, weight)  # type: ignore[attr-defined]


class ActivationMask:
    """Forward hook ``output -> masked output`` for a neuron/head site."""

    def __init__(self, masks: MaskSet, name: str):
        self.masks = masks
        self.site_name = name

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        if not isinstance(output, Tensor):
            from sc_interp.errors import ConfigError

            raise ConfigError(
                f"site {self.site_name!r}: expected the module to return a tensor, "
                f"got {type(output).__name__}"
            )
        return self.masks._masked_activation(self.site_name, output)


class InputMask:
    """Forward pre-hook ``input -> masked input`` for a neuron/head site with ``io="input"``.

    Masks the module's first positional argument (or, called with keywords only, its first
    tensor keyword argument), e.g. the ``[..., n_heads * head_dim]`` input of an attention
    output projection.
    """

    def __init__(self, masks: MaskSet, name: str):
        self.masks = masks
        self.site_name = name

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return _map_input(args, kwargs, self.site_name, self._mask)

    def _mask(self, value: Tensor) -> Tensor:
        return self.masks._masked_activation(self.site_name, value)  # type: ignore[attr-defined]


def _map_input(
    args: tuple, kwargs: dict, site_name: str, fn: Callable[[Tensor], Tensor]
) -> tuple[tuple, dict]:
    if args and isinstance(args[0], Tensor):
        return (fn(args[0]), *args[1:]), kwargs
    for key, value in kwargs.items():
        if isinstance(value, Tensor):
            return args, {**kwargs, key: fn(value)}
    from sc_interp.errors import ConfigError

    raise ConfigError(f"site {site_name!r}: the module was called without a tensor input")


def observe(module: nn.Module, site: Site, fn: Callable[[Tensor], None]) -> Any:
    """Call ``fn`` on the activation ``site`` masks at each forward; returns the torch handle.

    Used to record unmasked activations (mean / resample ablations); remove the handle in
    ``finally``.
    """
    if site.io == "input":

        def pre_hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            _map_input(args, kwargs, site.name, lambda t: (fn(t), t)[1])

        return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def hook(mod: nn.Module, inputs: Any, output: Any) -> None:
        fn(output)

    return module.register_forward_hook(hook)


def transform(module: nn.Module, site: Site, fn: Callable[[Tensor], Tensor]) -> Any:
    """Replace the activation ``site`` masks by ``fn(activation)`` at each forward.

    For evaluations that mask without a MaskSet (the random-subnetwork control's batched
    draws); returns the torch handle, to remove in ``finally``.
    """
    if site.io == "input":

        def pre_hook(mod: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            return _map_input(args, kwargs, site.name, fn)

        return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def hook(mod: nn.Module, inputs: Any, output: Any) -> Any:
        if not isinstance(output, Tensor):
            from sc_interp.errors import ConfigError

            raise ConfigError(
                f"site {site.name!r}: expected the module to return a tensor, "
                f"got {type(output).__name__}"
            )
        return fn(output)

    return module.register_forward_hook(hook)


@dataclass
class Handle:
    """How to undo one installation."""

    module: nn.Module
    site: Site
    hook: Any = None  # torch RemovableHandle for activation sites
    order: tuple[str, ...] = ()  # the module's parameter order before parametrizing
    parametrization: WeightMask | None = None
    torch_property: property | None = None  # parametrize's own property, if we replaced it


def _fast_property(module: nn.Module, attr: str, weight_mask: WeightMask) -> property | None:
    """Replace parametrize's property for ``attr`` by a shortcut; returns the one replaced.

    parametrize gives every parametrized module its own class, so the property set here
    serves this module only (and deep copies of it, which share the class: their
    parametrization is a copy, not ``weight_mask``, so they take torch's path).
    """
    cls = type(module)
    slow = cls.__dict__.get(attr)
    plist: Any = module.parametrizations[attr]  # type: ignore[index]
    if not isinstance(slow, property) or slow.fget is None or len(plist) != 1:
        return None
    slow_get = slow.fget
    masks, name = weight_mask.masks, weight_mask.site_name

    def get(mod: nn.Module) -> Tensor:
        chain = mod._modules["parametrizations"]._modules[attr]  # type: ignore[union-attr]
        if (
            not parametrize._cache_enabled
            and len(chain._modules) == 1  # type: ignore[union-attr]
            and chain._modules["0"] is weight_mask  # type: ignore[union-attr]
        ):
            weight = chain._parameters["original"]  # type: ignore[union-attr]
            if weight is not None and not is_sharded(weight):
                return masks._masked_weight(name, weight)  # type: ignore[attr-defined]
        return slow_get(mod)

    setattr(cls, attr, property(get, slow.fset, doc=slow.__doc__))
    return slow


def is_masked(root: nn.Module, site: Site) -> bool:
    """Whether ``site`` already carries an sc-interp mask."""
    if site.kind == "edge":
        from sc_interp import _edge_runtime

        return _edge_runtime.is_masked(root, site)
    module = root.get_submodule(site.module) if site.module else root
    if site.kind == "activation" and site.io == "input":
        return any(isinstance(h, InputMask) for h in module._forward_pre_hooks.values())
    if site.kind == "activation":
        return any(isinstance(h, ActivationMask) for h in module._forward_hooks.values())
    assert site.attr is not None
    if not parametrize.is_parametrized(module, site.attr):
        return False
    return any(isinstance(p, WeightMask) for p in module.parametrizations[site.attr])  # type: ignore[union-attr]


def masked_modules(root: nn.Module) -> list[str]:
    """Paths of the modules of ``root`` that carry sc-interp neuron, head or weight masks."""
    out = []
    for path, module in root.named_modules():
        hooks = [*module._forward_hooks.values(), *module._forward_pre_hooks.values()]
        parametrized = getattr(module, "parametrizations", None) or {}
        if any(isinstance(h, ActivationMask | InputMask) for h in hooks) or any(
            isinstance(p, WeightMask) for plist in parametrized.values() for p in plist
        ):
            out.append(path)
    return out


def install(root: nn.Module, site: Site, masks: MaskSet) -> Handle:
    """Install the mask for ``site`` on ``root`` and return how to undo it."""
    if site.kind == "edge":
        from sc_interp import _edge_runtime

        module, removers = _edge_runtime.install(root, site, masks)
        return Handle(module, site, hook=removers)
    module = root.get_submodule(site.module) if site.module else root
    if site.kind == "activation" and site.io == "input":
        hook = module.register_forward_pre_hook(InputMask(masks, site.name), with_kwargs=True)
        return Handle(module, site, hook=hook)
    if site.kind == "activation":
        hook = module.register_forward_hook(ActivationMask(masks, site.name))
        return Handle(module, site, hook=hook)
    assert site.attr is not None
    order = tuple(module._parameters)
    weight_mask = WeightMask(masks, site.name)
    # unsafe=True: skip parametrize's trial call, which would compute a masked copy at attach
    parametrize.register_parametrization(module, site.attr, weight_mask, unsafe=True)
    torch_property = _fast_property(module, site.attr, weight_mask)
    return Handle(
        module, site, order=order, parametrization=weight_mask, torch_property=torch_property
    )


def remove(handle: Handle) -> None:
    """Undo one installation, restoring the original parameter object and order."""
    if handle.hook is not None:
        handle.hook.remove()
        return
    module, attr = handle.module, handle.site.attr
    assert attr is not None
    if not parametrize.is_parametrized(module, attr):
        return
    plist: Any = module.parametrizations[attr]  # type: ignore[index]
    others = [p for p in plist if p is not handle.parametrization]
    if others:
        # someone else's parametrization is on the same tensor: take only ours off
        index = next(i for i, p in enumerate(plist) if p is handle.parametrization)
        del plist[index]
        if handle.torch_property is not None:
            setattr(type(module), attr, handle.torch_property)
        return
    parametrize.remove_parametrizations(module, attr, leave_parametrized=False)
    params = module._parameters
    ordered = {k: params[k] for k in handle.order if k in params}
    ordered.update({k: v for k, v in params.items() if k not in ordered})
    params.clear()
    params.update(ordered)


def remove_all(handles: list[Handle]) -> None:
    """Undo every installation, newest first; keeps going if one removal fails."""
    errors: list[BaseException] = []
    for handle in reversed(handles):
        try:
            remove(handle)
        except Exception as exc:  # pragma: no cover - defensive: finish the others first
            errors.append(exc)
    if errors:
        raise errors[0]


def add_input_hook(module: nn.Module, hook: Any) -> Any:
    """A forward pre-hook ``hook(module, args, kwargs)`` on ``module``; returns its handle."""
    return module.register_forward_pre_hook(hook, with_kwargs=True)


def strip_activation_hooks(copy: nn.Module) -> None:
    """Drop sc-interp's activation hooks (forward and pre-hooks) from a deep copy."""
    for module in copy.modules():
        for key, hook in list(module._forward_hooks.items()):
            if isinstance(hook, ActivationMask):
                del module._forward_hooks[key]
                module._forward_hooks_with_kwargs.pop(key, None)
                module._forward_hooks_always_called.pop(key, None)
        for key, hook in list(module._forward_pre_hooks.items()):
            if isinstance(hook, InputMask):
                del module._forward_pre_hooks[key]
                module._forward_pre_hooks_with_kwargs.pop(key, None)
