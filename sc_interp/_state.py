"""What an entry point may change on the user's model, and putting it back (DESIGN.md §6).

Every public function that touches a model snapshots, before it changes anything, the
train/eval flag of every module and the ``requires_grad`` flag of every parameter, and puts
them back in ``finally``, also on KeyboardInterrupt. On a failure it also takes off any
sc-interp hook or parametrization that is still on a module and was not there before (the
MaskSets' own cleanup normally did that already; this is the second line of defence).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn
from torch.nn.utils import parametrize

from sc_interp import _edge_runtime, _hooks

_OURS = (
    _hooks.ActivationMask,
    _hooks.InputMask,
    _edge_runtime.EdgeSourceHook,
    _edge_runtime.EdgeDestinationHook,
)


@contextlib.contextmanager
def preserved(root: nn.Module, *, train_flags: bool = True) -> Iterator[None]:
    """Restore ``root``'s flags on exit; on failure, also its hooks and ``requires_grad``.

    Args:
        root: the torch module the entry point works on.
        train_flags: restore module train/eval flags on success too (entry points that run
            the model in eval mode); on failure they are always restored.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2))
        >>> with preserved(net):
        ...     _ = net.eval()
        >>> net.training
        True
    """
    modules = list(root.modules())
    flags = [(m, m.training) for m in modules]
    grads = [(p, p.requires_grad) for p in root.parameters()]
    before = {id(m): _ours(m) for m in modules}
    ok = False
    try:
        yield
        ok = True
    finally:
        if train_flags or not ok:
            for m, flag in flags:
                m.training = flag
        if not ok:
            for m in modules:
                _strip_new(m, before.get(id(m), set()))
            for p, flag in grads:
                if p.requires_grad != flag:
                    p.requires_grad_(flag)


def _ours(module: nn.Module) -> set[int]:
    """ids of the sc-interp hooks and parametrizations on ``module``."""
    found = {k for k, h in module._forward_hooks.items() if isinstance(h, _OURS)}
    found |= {k for k, h in module._forward_pre_hooks.items() if isinstance(h, _OURS)}
    if parametrize.is_parametrized(module):
        for plist in module.parametrizations.values():  # type: ignore[union-attr]
            found |= {id(p) for p in plist if isinstance(p, _hooks.WeightMask)}
    return found


def _strip_new(module: nn.Module, before: set[int]) -> None:
    for hooks in (module._forward_hooks, module._forward_pre_hooks):
        for key, hook in list(hooks.items()):
            if isinstance(hook, _OURS) and key not in before:
                del hooks[key]
                module._forward_hooks_with_kwargs.pop(key, None)
                module._forward_pre_hooks_with_kwargs.pop(key, None)
    if not parametrize.is_parametrized(module):
        return
    for attr, plist in list(module.parametrizations.items()):  # type: ignore[union-attr]
        mine = [p for p in plist if isinstance(p, _hooks.WeightMask) and id(p) not in before]
        if not mine:
            continue
        if len(mine) == len(plist):
            parametrize.remove_parametrizations(module, attr, leave_parametrized=False)
        else:
            for p in mine:
                del plist[next(i for i, q in enumerate(plist) if q is p)]
