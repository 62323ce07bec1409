"""Untrained copies of a model drawn from the architecture's own initialisation.

Used by the random-init control of :func:`sc_interp.test_compositionality` (the paper's
randomly initialised models) and by ``method="random"`` ablation. Each part of the model is
re-drawn by the most specific initialiser that owns it, walking the module tree from the top:

1. a TransformerLens 2/3 ``HookedTransformer``: a fresh model built from its config (its
   ``init_weights()`` alone would leave norm weights and biases as trained);
2. a TransformerLens 4 ``TransformerBridge`` booted natively: its ``init_weights()``; a
   bridge around a Hugging Face model: that model's initialisation (3.);
3. a Hugging Face ``PreTrainedModel``: its ``init_weights()`` (``_init_weights`` on every
   module, then weight tying), with the "already initialised" flags cleared first;
4. any module with ``reset_parameters()`` (torch Linear, Conv, norms, embeddings...);
5. whatever is left: a normal draw with the parameter's current standard deviation, the
   fallback, which :class:`InitRecord` names parameter by parameter.

The seed (salted, so that seed 0 does not reproduce a model built after
``torch.manual_seed(0)``) replaces the model's own configured seed, so different seeds give
different models, and the global torch RNG is left as it was.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sc_interp.adapters.transformer_lens import _family as tl_family


@dataclass
class InitRecord:
    """Which initialiser re-drew which parameters (``{initialiser: [parameter names]}``)."""

    by_method: dict[str, list[str]] = field(default_factory=dict)

    @property
    def fallback(self) -> list[str]:
        """Parameters drawn from the fallback (no initialiser of their own was found)."""
        return self.by_method.get(FALLBACK, [])

    def describe(self) -> str:
        """One line for reports: initialiser (number of parameters), ..."""
        parts = []
        for method, names in self.by_method.items():
            shown = f"{method} ({len(names)} parameters"
            if method == FALLBACK:
                shown += ": " + ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            parts.append(shown + ")")
        return "; ".join(parts) or "no parameters"


FALLBACK = "fallback N(0, trained std)"


def is_hf_model(module: nn.Module) -> bool:
    """True for a Hugging Face ``PreTrainedModel`` (recognised by class, never imported)."""
    return any(
        c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers")
        for c in type(module).__mro__
    )


def reinitialize(model: nn.Module, seed: int = 0) -> tuple[nn.Module, InitRecord]:
    """A randomly initialised, untrained copy of ``model`` (same architecture).

    Args:
        model: the torch module (already resolved from any wrapper).
        seed: seeds every initialiser; the global RNG state is restored afterwards.

    Returns:
        The copy and the record of which initialiser drew which parameter.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
        >>> clone, record = reinitialize(net, seed=1)
        >>> record.describe()
        'reset_parameters (4 parameters)'
    """
    # a salted seed: seed 0 must not reproduce a model built after torch.manual_seed(0)
    seed = (int(seed) * 1_000_003 + 0x5C17) % 2**31
    clone = copy.deepcopy(model)
    names = {id(p): n for n, p in clone.named_parameters(remove_duplicate=False)}
    record = InitRecord()
    covered: set[int] = set()

    def mark(method: str, params: Any) -> None:
        for p in params:
            if id(p) not in covered:
                covered.add(id(p))
                record.by_method.setdefault(method, []).append(names.get(id(p), "?"))

    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        _walk(clone, seed, mark, covered)
        gen = torch.Generator().manual_seed(seed)
        rest = [p for p in clone.parameters() if id(p) not in covered]
        for p in rest:
            std = float(p.float().std()) if p.numel() > 1 else 0.02
            p.copy_(torch.randn(p.shape, generator=gen) * (std or 0.02))
        mark(FALLBACK, rest)
    return clone, record


def _walk(module: nn.Module, seed: int, mark: Any, covered: set[int]) -> None:
    method = _own_initialiser(module, seed)
    if method is not None:
        mark(method, module.parameters())
        return
    reset = getattr(module, "reset_parameters", None)
    own = [p for p in module.parameters(recurse=False) if id(p) not in covered]
    if callable(reset) and own:
        reset()
        mark("reset_parameters", own)
    elif callable(getattr(module, "_reset_parameters", None)) and own:
        module._reset_parameters()  # type: ignore[operator]  # nn.MultiheadAttention
        mark("reset_parameters", own)
    for child in module.children():
        _walk(child, seed, mark, covered)


def _own_initialiser(module: nn.Module, seed: int) -> str | None:
    """Run a whole-model initialiser if ``module`` has one; return its name."""
    kind = tl_family(module)
    if kind == "HookedTransformer":
        # init_weights() re-draws only the W_ matrices; the constructor also sets norm
        # weights to 1 and biases to 0, so build a fresh model from the config and copy it
        cfg: Any = copy.deepcopy(getattr(module, "cfg"))  # noqa: B009 - typed Any on purpose
        cfg.seed = seed
        fresh = type(module)(cfg)
        module.load_state_dict(fresh.state_dict())
        return f"{type(module).__name__}(cfg) construction"
    if kind == "TransformerBridge":
        original = getattr(module, "original_model", None)
        if is_hf_model(original):  # type: ignore[arg-type]
            _hf_init(original)  # type: ignore[arg-type]
            return f"{type(original).__name__}.init_weights (inside the bridge)"
        with _config_seed(module, seed):
            module.init_weights()  # type: ignore[operator]
        return "TransformerBridge.init_weights"
    if is_hf_model(module):
        _hf_init(module)
        return f"{type(module).__name__}.init_weights"
    return None


def _hf_init(model: nn.Module) -> None:
    # transformers >= 5 skips modules and tensors flagged as initialised; clear the flags
    for m in model.modules():
        if getattr(m, "_is_hf_initialized", False):
            object.__setattr__(m, "_is_hf_initialized", False)
    for t in list(model.parameters()) + list(model.buffers()):
        if getattr(t, "_is_hf_initialized", False):
            t._is_hf_initialized = False  # type: ignore[attr-defined]
    model.init_weights()  # type: ignore[operator]


class _config_seed:
    """Temporarily set ``module.cfg.seed`` (TransformerLens initialisers read it)."""

    def __init__(self, module: nn.Module, seed: int):
        self.cfg = getattr(module, "cfg", None)
        self.seed = seed

    def __enter__(self) -> None:
        if self.cfg is not None:
            self.previous = getattr(self.cfg, "seed", None)
            self.cfg.seed = self.seed

    def __exit__(self, *exc: object) -> None:
        if self.cfg is not None:
            self.cfg.seed = self.previous
