"""Neuron/head ablations as nnsight interventions inside ``model.trace(..., remote=...)``.

On a model served by NDIF, hooks on the local module never run: the request carries only
the code of the ``with model.trace(...)`` block and the values it names. So inside
``sc.ablate(model, sub, method, remote=...)`` or ``sc.isolate(...)`` on an nnsight model,
every run sc-interp makes (:func:`sc_interp.evaluate`, recording activations for ``mean``
and ``resample``) is one ``model.trace(..., remote=remote)`` whose block holds only torch
operations on tensors computed here beforehand, one line per masked site::

    site_activation = site_activation * keep + fill

``keep`` is the hard mask broadcast over the unit axis, ``fill`` what removed units become
(nothing for ``zero``, ``(1 - keep) * mean`` for ``mean``, ``(1 - keep) * donor
activations`` for ``resample``, with donors drawn here, seeded, per batch). No sc-interp
code runs inside the trace, so the server needs no sc-interp; nnsight's own serverless
dry run (``remote="local"``: serialize, hide non-installed modules, deserialize, run)
checks that in the tests.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sc_interp._prompt_batch import PromptBatch
from sc_interp.errors import ConfigError, UnsupportedModelError
from sc_interp.sites import Site, expand_to_activation

_CHUNK = 256  # inputs per recording trace


@dataclass
class _Step:
    """One masked site: where it is and what its activation is multiplied by."""

    name: str
    site: Site
    envoy: Any
    keep: Tensor  # [n_units] float, 1 = kept


class TracePlan:
    """What every trace of ``model`` runs while an ablation with ``remote=`` is active.

    Yielded by ``sc.ablate(..., remote=...)`` / ``sc.isolate(..., remote=...)``. For a
    trace of your own, :meth:`interventions` gives the plain ``(envoy, io, keep, fill)``
    tuples to write inside the block (see the how-to page on nnsight).

    Attributes:
        remote: what each trace passes as ``remote=`` (``True`` for NDIF, ``"local"`` for
            nnsight's serverless dry run, a host URL).
        method: ``zero``, ``mean`` or ``resample``.
        keep: hard masks per site (``True`` = the unit runs), as applied.

    Example:
        >>> with sc.isolate(lm, learned, remote=True) as plan:  # doctest: +SKIP
        ...     alone = sc.evaluate(lm, task)  # each batch: one lm.trace(..., remote=True)
        ...     steps = plan.interventions(tokens)  # for a trace of your own
    """

    def __init__(self, model: Any, steps: list[_Step], method: str, remote: bool | str):
        self.model = model
        self.steps = steps
        self.method = method
        self.remote = remote
        self._means: dict[str, Tensor] = {}
        self._recorded: dict[str, Tensor] = {}
        self._donors: Any = None
        self._data_shape: tuple[int, ...] = ()
        self._ndim: dict[str, int] = {}

    @property
    def keep(self) -> dict[str, Tensor]:
        """Per site, which units run (``True``) in this plan's traces."""
        return {s.name: s.keep.bool() for s in self.steps}

    # ---------------------------------------------------------------- setup
    def prepare(self, inputs: Tensor | PromptBatch | None, seed: int) -> None:
        """Record what ``mean``/``resample`` need (through traces) and the sites' ranks."""
        from sc_interp.ablate import Donors, unit_mean

        if self.method == "zero":
            positive = [s.name for s in self.steps if s.site.axis >= 0]
            if positive and inputs is None:
                raise ConfigError(
                    f"zero ablation through a trace of sites whose unit axis counts from the "
                    f"front ({positive[:3]}) needs data= (a few inputs) to learn the "
                    "activations' rank"
                )
            if positive:  # the keep mask's shape depends on the activation's rank
                probe = self._record_chunk(inputs[:1])  # type: ignore[index]
                self._ndim = {name: t.ndim for name, t in probe.items()}
            return
        assert inputs is not None
        recorded = self.record(inputs)
        self._ndim = {name: t.ndim for name, t in recorded.items()}
        if self.method == "mean":
            real = inputs.attention_mask if isinstance(inputs, PromptBatch) else None
            self._means = {s.name: unit_mean(recorded[s.name], s.site, real) for s in self.steps}
            return
        self._recorded = recorded
        tokens = inputs.tokens if isinstance(inputs, PromptBatch) else inputs
        self._data_shape = tuple(tokens.shape[1:])
        self._donors = Donors(inputs, torch.Generator().manual_seed(seed))

    def record(self, inputs: Tensor | PromptBatch) -> dict[str, Tensor]:
        """The unmasked activations at every step's site for ``inputs``, through traces."""
        chunks: dict[str, list[Tensor]] = {s.name: [] for s in self.steps}
        for start in range(0, len(inputs), _CHUNK):
            for name, t in self._record_chunk(inputs[start : start + _CHUNK]).items():
                chunks[name].append(t)
        return {name: torch.cat(parts) for name, parts in chunks.items()}

    def _record_chunk(self, x: Tensor | PromptBatch) -> dict[str, Tensor]:
        from sc_interp._optional import require

        nnsight = require("nnsight", "ablations with remote=")
        args, kwargs = _arguments(self.model, x)
        # the block names only nnsight, torch values and the model (what a server has)
        model, remote, envoys = self.model, self.remote, [(s.envoy, s.site.io) for s in self.steps]
        with model.trace(*args, remote=remote, **kwargs):
            saved = nnsight.save([])
            for envoy, io in envoys:
                act = envoy.input if io == "input" else envoy.output
                saved.append(act.detach().cpu())
        return {s.name: t for s, t in zip(self.steps, saved, strict=True)}

    # ---------------------------------------------------------------- runs
    def interventions(self, x: Tensor | PromptBatch) -> list[tuple[Any, str, Tensor, Tensor]]:
        """``(envoy, io, keep, fill)`` per site for a trace on ``x``.

        Inside the trace, write ``act = envoy.input`` (``io == "input"``) or
        ``envoy.output``, then set it to ``act * keep.to(act) + fill.to(act)``. Tensors are
        on the CPU, float32; for ``resample`` each call draws new donors.
        """
        out = []
        rows = self._donor_rows(x) if self.method == "resample" else None
        for step in self.steps:
            ndim = self._ndim.get(step.name, -step.site.axis if step.site.axis < 0 else 0)
            keep = expand_to_activation(step.keep, step.site, _shape_only(ndim, step))
            if self.method == "mean":
                fill = (1 - keep) * self._means[step.name]
            elif rows is not None:
                fill = (1 - keep) * self._recorded[step.name][rows]
            else:
                fill = torch.zeros(())
            out.append((step.envoy, step.site.io, keep, fill))
        return out

    def _donor_rows(self, x: Tensor | PromptBatch) -> Tensor:
        tokens = x.tokens if isinstance(x, PromptBatch) else x
        if tuple(tokens.shape[1:]) != self._data_shape:
            raise ConfigError(
                f"resample: the recorded inputs have shape {self._data_shape} per example but "
                f"these have {tuple(tokens.shape[1:])}; use inputs of the same shape"
            )
        self._donors.draw(None, (tokens,), {})
        per_input = max(1, len(next(iter(self._recorded.values()))) // self._donors.n)
        return self._donors.rows(len(tokens) * per_input, per_input)

    def run(self, x: Tensor | PromptBatch) -> Any:
        """The model's output on ``x`` with every step applied, in one trace."""
        args, kwargs = _arguments(self.model, x)
        model, remote, items = self.model, self.remote, self.interventions(x)
        with model.trace(*args, remote=remote, **kwargs):
            for envoy, io, keep, fill in items:
                act = envoy.input if io == "input" else envoy.output
                new = act * keep.to(act.device, act.dtype) + fill.to(act.device, act.dtype)
                if io == "input":
                    envoy.input = new
                else:
                    envoy.output = new
            out = model.output.save()
        return out


def _shape_only(ndim: int, step: _Step) -> Tensor:
    """A zero-stride stand-in with the site's activation rank and unit-axis length."""
    shape = [1] * max(ndim, 1)
    shape[step.site.axis % len(shape)] = step.keep.numel() * step.site.group
    return torch.empty(()).expand(shape)


def _arguments(model: Any, x: Tensor | PromptBatch) -> tuple[tuple[Any, ...], dict[str, Any]]:
    from sc_interp._run import prompt_arguments
    from sc_interp.adapters import resolve

    if isinstance(x, PromptBatch):
        return prompt_arguments(resolve(model), x)
    return (x,), {}


# ---------------------------------------------------------------------- the active plans
_ACTIVE: weakref.WeakKeyDictionary[Any, TracePlan] = weakref.WeakKeyDictionary()


def active(model: object) -> TracePlan | None:
    """The plan every trace of ``model`` applies now, if an ablation with ``remote=`` is open."""
    try:
        return _ACTIVE.get(model)
    except TypeError:  # not weak-referenceable: never registered
        return None


def check_remote(remote: object) -> bool | str:
    """``remote`` as nnsight takes it: False, True, ``"local"`` or a host URL."""
    if isinstance(remote, bool):
        return remote
    if isinstance(remote, str) and remote:
        return remote
    raise ConfigError(
        f"remote must be False, True (NDIF), 'local' (nnsight's serverless dry run) or a host "
        f"URL, got {remote!r}"
    )


@contextlib.contextmanager
def planned(
    model: Any,
    hard: dict[str, Tensor],
    sites: dict[str, Site],
    *,
    keep_subnetwork: bool,
    method: str,
    inputs: Tensor | PromptBatch | None,
    seed: int,
    remote: bool | str,
) -> Iterator[TracePlan]:
    """Make ``plan`` the one every sc-interp run of ``model`` goes through, for the block."""
    from sc_interp import _hooks
    from sc_interp.adapters import resolve
    from sc_interp.adapters.nnsight import envoy_at, is_nnsight

    if not is_nnsight(model) or not callable(getattr(model, "_remote_backend", None)):
        raise UnsupportedModelError(
            f"remote= runs the ablation as nnsight interventions and needs a remotable nnsight "
            f"model (LanguageModel, TransformersModel), got {type(model).__name__}; leave "
            "remote=False to use hooks on the local model"
        )
    unit = next(iter(sites.values())).unit if sites else "?"
    if any(s.kind != "activation" for s in sites.values()):
        raise ConfigError(
            f"{unit} masks cannot run as trace interventions; remote= takes neuron or head "
            "subnetworks (weight and edge masks need the local model)"
        )
    if active(model) is not None:
        raise ConfigError("another ablation with remote= is open on this model; nest none")
    left = _hooks.masked_modules(resolve(model))
    if left:
        raise ConfigError(
            f"sc-interp masks are attached to this model ({left[:3]}); their hooks would not "
            "run remotely; detach them first"
        )
    steps = []
    for name in [n for n in sites if n in hard]:  # forward order, as nnsight requires
        mask = hard[name]
        kept = mask.bool().cpu() if keep_subnetwork else ~mask.bool().cpu()
        steps.append(_Step(name, sites[name], envoy_at(model, sites[name].module), kept.float()))
    plan = TracePlan(model, steps, method, remote)
    plan.prepare(inputs, seed)
    _ACTIVE[model] = plan
    try:
        yield plan
    finally:
        _ACTIVE.pop(model, None)
