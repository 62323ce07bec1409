"""Subnetwork: the result of mask training, detached from any model.

Holds the learned logits (the hard mask is ``logits > 0``), the mask and training
configs, the per-epoch history and the fingerprint of the model it was learned on.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sc_interp.adapters import find_sites, resolve
from sc_interp.errors import AttachError, ConfigError, MaskFileError
from sc_interp.masks import MaskConfig, MaskSet, attach_masks
from sc_interp.sites import UnitMap, check_shapes, model_fingerprint

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
        sites = {s.name: s for s in find_sites(root, self.config.unit)}
        check_shapes(self.logits, sites)

    def attach(self, model: object) -> MaskSet:
        """Attach these masks (hard, eval mode) to ``model``; detach the result when done.

        Raises:
            AttachError: ``model`` is not the model the masks were learned on (fingerprint
                or shapes differ); nothing is attached then.
        """
        self.check(model)
        config = MaskConfig(
            **{**self.config.to_dict(), "targets": [glob.escape(n) for n in self.logits]}
        )
        masks = attach_masks(model, config)
        with torch.no_grad():
            for name, param in masks.logits.items():
                param.copy_(self.logits[name])
        masks.eval()
        return masks

    def save(self, path: str | Path) -> Path:
        """Save as safetensors (logits) with JSON metadata; never pickled."""
        from sc_interp._persist import version, write_safetensors

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
        }
        return write_safetensors(path, self.logits, meta)

    @classmethod
    def load(cls, path: str | Path) -> Subnetwork:
        """Load a Subnetwork written by :meth:`save`."""
        from sc_interp._persist import read_safetensors

        tensors, meta = read_safetensors(path)
        if meta.get("format") != FORMAT:
            raise MaskFileError(
                f"{path} is not an sc-interp Subnetwork file (format {meta.get('format')!r})"
            )
        try:
            config = MaskConfig(**meta["config"])
            logits = {name: tensors[name] for name in meta["sites"]}
            units = {name: UnitMap(**spec) for name, spec in meta.get("units", {}).items()}
        except (KeyError, TypeError, AttributeError, ConfigError) as exc:
            raise MaskFileError(f"{path}: incomplete Subnetwork metadata ({exc})") from None
        return cls(
            logits,
            config,
            meta.get("train_config", {}),
            meta.get("task", ""),
            meta.get("records", []),
            meta.get("fingerprint", ""),
            units,
        )

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
