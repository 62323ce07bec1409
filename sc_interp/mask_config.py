"""MaskConfig and site selection: which units of a model a MaskSet masks.

Split out of :mod:`sc_interp.masks` (which re-exports every name here): a MaskConfig is
plain, validated data; the functions map it onto a model's sites.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from sc_interp import _validate
from sc_interp.adapters import find_sites
from sc_interp.errors import ConfigError
from sc_interp.relax import RELAXATIONS
from sc_interp.sites import Site, check_unit, select_sites

MAX_INIT = 100.0


@dataclass(frozen=True)
class MaskConfig:
    """What to mask and how masks are relaxed.

    Args:
        unit: ``"weight"`` (elementwise over weight matrices), ``"neuron"`` (hidden units,
            output channels), ``"head"`` (attention heads' outputs) or ``"edge"`` (edges
            ``src->dst`` between a TransformerLens model's components: each destination
            reads the masked sum of its upstream sources' outputs; see
            :mod:`sc_interp._edge_runtime` for the cost, about ``sources x batch x
            positions x d_model`` extra floats per forward).
        targets: glob patterns over site names (see :func:`sc_interp.list_sites`);
            ``None`` masks every site of ``unit``. For edges a pattern may also match
            canonical edge names (``"a0.h1->*"``, ``"*->logits"``, ``"input->a1.h0<v>"``).
        relaxation: ``"continuous"`` (the paper), ``"hard_concrete"`` or ``"straight_through"``.
        init: initial value of every logit (paper grid: 0.1, 0.05, 0, -0.05). A positive
            value starts with every unit kept by the hard (eval) mask, but the soft
            (training) mask starts at ``sigmoid(beta * init)`` with ``beta = 1``: about 0.51
            for ``init=0.05``, so training begins from a model whose masked units are
            roughly halved, not from the unmasked model.

    Example:
        >>> MaskConfig(unit="neuron", targets=["blocks.*.mlp.hook_post"]).unit
        'neuron'
    """

    unit: str = "weight"
    targets: Sequence[str] | None = None
    relaxation: str = "continuous"
    init: float = 0.05

    def __post_init__(self) -> None:
        check_unit(self.unit)
        _validate.choice("relaxation", self.relaxation, sorted(RELAXATIONS))
        # logits are float32 and beta reaches a few hundred: larger starts only saturate
        init = _validate.number("init", self.init, minimum=-MAX_INIT, maximum=MAX_INIT)
        object.__setattr__(self, "init", init)
        if self.targets is not None:
            targets = self.targets
            if isinstance(targets, str):
                targets = [targets]
            if (
                not isinstance(targets, list | tuple)
                or not targets
                or not all(isinstance(t, str) and t for t in targets)
            ):
                raise ConfigError(
                    f"targets={self.targets!r}: must be None (every site) or a non-empty list "
                    "of glob patterns over site names (see sc.list_sites)"
                )
            object.__setattr__(self, "targets", tuple(targets))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (used in mask file metadata)."""
        return {
            "unit": self.unit,
            "targets": None if self.targets is None else list(self.targets),
            "relaxation": self.relaxation,
            "init": self.init,
        }


def list_sites(model: object, unit: str = "weight") -> list[Site]:
    """The mask sites of ``unit`` kind in ``model``, in forward order.

    Site names are the toolkit's own (the full scheme: :mod:`sc_interp.adapters`): module
    paths for plain PyTorch and for Hugging Face models, plain or under nnsight (a
    ``head`` site such as ``model.layers.0.self_attn.o_proj`` masks each head's slice of
    that projection's *input*; a ``neuron`` site such as ``model.layers.0.mlp.down_proj``
    masks the MLP hidden units it reads), and TransformerLens' hook and parameter names
    (``blocks.0.attn.hook_z``, ``blocks.0.attn.q.weight``). A TL 4 bridge booted around a
    Hugging Face model therefore names the same places differently from the plain model:
    the bridge renames and re-wraps the modules (on GPT-2 it splits the fused ``c_attn``
    into ``attn.q|k|v``), and its hook points are where TransformerLens users read heads.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> [(s.name, s.shape) for s in list_sites(net, "neuron")]
        [('0', (4,)), ('2', (2,))]
    """
    return find_sites(model, unit)


def config_sites(available: list[Site], config: MaskConfig) -> list[Site]:
    """The sites ``config`` selects from ``available`` (edge targets may name single edges).

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> [s.name for s in config_sites(list_sites(net, "neuron"), MaskConfig("neuron", ["2"]))]
        ['2']
    """
    if config.unit == "edge":
        from sc_interp._edge_graph import select_edges

        return select_edges(available, config.targets)
    return select_sites(available, config.targets)


def model_sites(root: nn.Module, config: MaskConfig) -> dict[str, Site]:
    """The model's sites of ``config.unit`` by name, shaped as ``config`` selects them.

    Edge sites learned with edge-name targets hold only the selected edges, so saved or
    learned masks are checked against ``config``'s selection; other units' sites always
    have their full shape.
    """
    available = find_sites(root, config.unit)
    if config.unit == "edge":
        available = config_sites(available, config)
    return {s.name: s for s in available}


def exact_config(config: MaskConfig, names: Sequence[str]) -> MaskConfig:
    """``config`` targeting exactly the sites ``names`` (edge configs keep their targets)."""
    import glob

    if config.unit == "edge" and config.targets is not None:
        return config
    return MaskConfig(**{**config.to_dict(), "targets": [glob.escape(n) for n in names]})
