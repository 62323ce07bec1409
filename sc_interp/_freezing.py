"""What attaching masks changes on a model's own parameters, and putting it back.

``attach_masks`` freezes every base parameter; several MaskSets may sit on one model (on
different sites), so the user's original ``requires_grad`` flags are recorded once, by the
first MaskSet, and restored by the last one to detach.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn


@dataclass
class _State:
    """What attaching changed on a model, to be put back by the last detach."""

    requires_grad: dict[int, tuple[nn.Parameter, bool]] = field(default_factory=dict)
    mask_sets: int = 0


# Per-model record of what attaching changed, shared by all MaskSets on that model so the
# last one to leave restores the user's original requires_grad flags.
_STATES: dict[int, tuple[nn.Module, _State]] = {}


def original_requires_grad(root: nn.Module) -> dict[str, bool]:
    """The ``requires_grad`` flags ``root``'s parameters had before masks froze them,
    keyed by parameter name as it is without our parametrizations."""
    entry = _STATES.get(id(root))
    saved = entry[1].requires_grad if entry is not None and entry[0] is root else {}
    flags = {}
    for name, p in root.named_parameters():
        clean = re.sub(r"\.parametrizations\.(\w+)\.original$", r".\1", name)
        flags[clean] = saved[id(p)][1] if id(p) in saved else p.requires_grad
    return flags


def freeze(root: nn.Module) -> None:
    entry = _STATES.get(id(root))
    if entry is None or entry[0] is not root:
        state = _State({id(p): (p, p.requires_grad) for p in root.parameters()})
        _STATES[id(root)] = (root, state)
    else:
        state = entry[1]
    state.mask_sets += 1
    for p, _ in state.requires_grad.values():
        p.requires_grad_(False)


def release(root: nn.Module) -> None:
    entry = _STATES.get(id(root))
    if entry is None:
        return
    state = entry[1]
    state.mask_sets -= 1
    if state.mask_sets <= 0:
        for p, flag in state.requires_grad.values():
            p.requires_grad_(flag)
        del _STATES[id(root)]
