"""Subnetwork: the result of mask training, detached from any model.

Holds the learned logits (the hard mask is ``logits > 0``), the mask and training
configs, the per-epoch history and the fingerprint of the model it was learned on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sc_interp import _validate
from sc_interp._safetensors import meta_field, read, site_names, version, write
from sc_interp.adapters import find_sites, resolve
from sc_interp.errors import AttachError, ConfigError, MaskFileError, ScInterpError, TargetError
from sc_interp.masks import MaskConfig, MaskSet, attach_masks, exact_config, model_sites
from sc_interp.sites import UNITS, UnitMap, check_shapes, model_fingerprint

FORMAT = "sc-interp.subnetwork/1"


@dataclass
class Subnetwork:
    """A learned subnetwork: hard masks (from logits), configs and training history.

    Attributes:
        logits: mask logits keyed by site name (CPU tensors).
        config: the :class:`MaskConfig` it was learned with.
        train_config: the training hyper-parameters, as a dict.
        task: name of the subtask.
        records: per-epoch history rows (see :attr:`history`).
        fingerprint: fingerprint of the model it was learned on.
        units: for sites that are heads or neurons (or weights of them), which canonical
            circuit units their mask entries belong to (see :class:`~sc_interp.sites.UnitMap`);
            lets :func:`sc_interp.compare` map Hugging Face site names without the model.
        edges: for edge subnetworks, the canonical edge name of each mask entry per site
            (``{"blocks.1.hook_v_input": ("input->a1.h0<v>", ...)}``), so
            :func:`sc_interp.compare` and :func:`sc_interp.circuits.to_eap_json` read the
            subnetwork as a graph without the model.

    Example:
        >>> sub = Subnetwork({"fc": torch.tensor([1.0, -1.0])}, MaskConfig(unit="neuron"))
        >>> sub.masks["fc"].tolist(), sub.sparsity()
        ([True, False], 0.5)
    """

    logits: dict[str, torch.Tensor]
    config: MaskConfig
    train_config: dict[str, Any] = field(default_factory=dict)
    task: str = ""
    records: list[dict[str, float]] = field(default_factory=list)
    fingerprint: str = ""
    units: dict[str, UnitMap] = field(default_factory=dict)
    edges: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.config, MaskConfig):
            raise ConfigError(f"config must be a MaskConfig, got {type(self.config).__name__}")
        if not isinstance(self.logits, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) and v.is_floating_point()
            for k, v in self.logits.items()
        ):
            raise ConfigError(
                "logits must be a dict {site name: float tensor of mask logits}; for boolean "
                "masks use Subnetwork.from_masks(model, masks)"
            )

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """Hard masks (``logits > 0``) keyed by site name, as bool tensors."""
        return {k: v > 0 for k, v in self.logits.items()}

    @property
    def history(self) -> Any:
        """Per-epoch history as a pandas DataFrame (loss, accuracies, density, beta)."""
        from sc_interp._optional import require

        return require("pandas", "Subnetwork.history").DataFrame(self.records)

    def n_units(self) -> int:
        """Number of masked units (entries of all masks)."""
        return sum(v.numel() for v in self.logits.values())

    def density(self) -> float:
        """Fraction of units kept."""
        return sum(int(m.sum()) for m in self.masks.values()) / max(self.n_units(), 1)

    def sparsity(self) -> float:
        """Fraction of units removed (``1 - density``)."""
        return 1.0 - self.density()

    @classmethod
    def from_masks(
        cls, model: object, masks: dict[str, torch.Tensor], task: str = ""
    ) -> Subnetwork:
        """A Subnetwork from boolean masks (True = kept) keyed by ``model``'s site names.

        The unit is the one whose sites hold every key; shapes must match the sites.

        Example:
            >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3))
            >>> Subnetwork.from_masks(net, {"0": torch.tensor([True, False, True])}).config.unit
            'neuron'
        """
        if not isinstance(masks, dict) or not masks:
            raise ConfigError(
                f"expected a non-empty {{site: bool mask}} dict, got {type(masks).__name__}"
            )
        bad = [
            k
            for k, v in masks.items()
            if not (isinstance(v, torch.Tensor) and v.dtype == torch.bool)
        ]
        if bad:
            raise ConfigError(
                f"mask dicts hold boolean masks (True = kept); {bad[:3]} are not bool tensors. "
                "Turn logits into masks with `logits > 0`, or wrap logits in a Subnetwork"
            )
        root = resolve(model)
        for unit in UNITS:
            try:
                sites = {s.name: s for s in find_sites(root, unit)}
            except ScInterpError:  # a unit this model does not support (edges on GQA)
                continue
            if sites and set(masks) <= set(sites):
                check_shapes(masks, sites)
                logits = {k: torch.where(v.cpu(), 1.0, -1.0) for k, v in masks.items()}
                edges = {k: sites[k].edges for k in masks if sites[k].edges}
                return cls(
                    logits,
                    MaskConfig(unit=unit),
                    task=task,
                    fingerprint=model_fingerprint(root),
                    edges=edges,
                )
        raise TargetError(
            f"mask keys {sorted(masks)[:5]} are not sites of one unit kind of this model; "
            "see sc.list_sites(model, unit)"
        )

    def check(self, model: object) -> None:
        """Raise unless ``model`` is the model these masks were learned on (or one like it).

        Raises:
            AttachError: the fingerprints differ (parameter names or shapes), or a mask's
                shape differs from its site's.
            TargetError: a site of this subnetwork does not exist in ``model``.
        """
        root = resolve(model)
        if self.fingerprint:
            actual = model_fingerprint(root)
            if actual != self.fingerprint:
                raise AttachError(
                    f"this Subnetwork was learned on another model: its fingerprint is "
                    f"{self.fingerprint}, this model's is {actual} (parameter names or shapes differ)"
                )
        check_shapes(self.logits, model_sites(root, self.config))

    def to_maskset(self, model: object) -> MaskSet:
        """A detached MaskSet holding these masks (hard, eval mode) for ``model``'s sites.

        Nothing is attached: this is what :func:`sc_interp.apply_in_trace` applies as
        nnsight interventions (the remote path).
        """
        self.check(model)
        root = resolve(model)
        sites = [s for s in model_sites(root, self.config).values() if s.name in self.logits]
        masks = MaskSet(root, sites, self.config)
        with torch.no_grad():
            for name, param in masks.logits.items():
                param.copy_(self.logits[name])
        masks.eval()
        return masks

    def attach(self, model: object) -> MaskSet:
        """Attach these masks (hard, eval mode) to ``model``; detach the result when done.

        Raises:
            AttachError: ``model`` is not the model the masks were learned on (fingerprint
                or shapes differ); nothing is attached then.
        """
        self.check(model)
        masks = attach_masks(model, exact_config(self.config, list(self.logits)))
        try:
            with torch.no_grad():
                for name, param in masks.logits.items():
                    param.copy_(self.logits[name])
            masks.eval()
        except BaseException:
            masks.detach()
            raise
        return masks

    def save(self, path: str | Path) -> Path:
        """Save as safetensors (logits) with JSON metadata; never pickled.

        Raises:
            ConfigError: ``path`` is not a file path, is a directory, or cannot be written.
        """
        path = _validate.writable_file("path", path)
        meta = {
            "format": FORMAT,
            "version": version(),
            "config": self.config.to_dict(),
            "train_config": self.train_config,
            "task": self.task,
            "records": self.records,
            "fingerprint": self.fingerprint,
            "sites": list(self.logits),
            "units": {name: unit_map.to_dict() for name, unit_map in self.units.items()},
            "edges": {name: list(names) for name, names in self.edges.items()},
        }
        return write(path, self.logits, meta)

    @classmethod
    def load(cls, path: str | Path) -> Subnetwork:
        """Load a Subnetwork written by :meth:`save`.

        Raises:
            MaskFileError: the file is missing, not a safetensors file, not a Subnetwork
                file, or its metadata is malformed.
        """
        path = _validate.path("path", path, error=MaskFileError)
        tensors, meta = read(path)
        if meta.get("format") != FORMAT:
            raise MaskFileError(
                f"{path} is not an sc-interp Subnetwork file (format {meta.get('format')!r})"
            )
        config = file_config(meta, path)
        logits = {name: tensors[name] for name in site_names(meta, tensors, path)}
        optional = {
            "train_config": dict,
            "task": str,
            "records": list,
            "fingerprint": str,
            "units": dict,
            "edges": dict,
        }
        fields = {
            k: meta_field(meta, k, kind, path) if k in meta else kind()
            for k, kind in optional.items()
        }
        try:
            units = {name: UnitMap(**spec) for name, spec in fields["units"].items()}
        except (TypeError, ValueError, ConfigError) as exc:
            raise MaskFileError(f"{path}: malformed 'units' in the metadata ({exc})") from None
        edges = fields["edges"]
        if not all(
            isinstance(v, list) and all(isinstance(e, str) for e in v) for v in edges.values()
        ):
            raise MaskFileError(f"{path}: metadata 'edges' must map sites to lists of edge names")
        bad = [k for k, v in edges.items() if k not in logits or len(v) != logits[k].numel()]
        if bad:
            raise MaskFileError(f"{path}: metadata 'edges' of {bad[:3]} do not fit the masks")
        if not all(isinstance(r, dict) for r in fields["records"]):
            raise MaskFileError(f"{path}: metadata 'records' must be a list of dicts")
        return cls(
            logits, config, fields["train_config"], fields["task"], fields["records"],
            fields["fingerprint"], units, {k: tuple(v) for k, v in edges.items()},
        )  # fmt: skip

    def __repr__(self) -> str:
        lines = [
            f"Subnetwork(task={self.task!r}, unit={self.config.unit!r}, sites={len(self.logits)}, "
            f"kept {sum(int(m.sum()) for m in self.masks.values())}/{self.n_units()} "
            f"(density {self.density():.3f}))"
        ]
        for name, m in list(self.masks.items())[:12]:
            lines.append(f"  {name}: kept {int(m.sum())}/{m.numel()}")
        if self.records:
            last = self.records[-1]
            acc = last.get("test_accuracy")
            lines.append(
                f"  after {int(last['epoch'])} epochs: loss {last['loss']:.4f}"
                + (f", test accuracy {acc:.3f}" if acc is not None else "")
            )
        return "\n".join(lines)


def file_config(meta: dict[str, Any], path: Path) -> MaskConfig:
    """The MaskConfig recorded in a mask file's metadata."""
    raw = meta_field(meta, "config", dict, path)
    try:
        return MaskConfig(**raw)
    except (TypeError, ConfigError) as exc:
        raise MaskFileError(f"{path}: bad mask config in metadata ({exc})") from None
