"""sc-interp: structural compositionality for mechanistic interpretability.

Learn sparse binary masks over a frozen model (TransformerLens, nnsight or plain PyTorch)
that keep one subroutine working, test whether the network composes modular subnetworks,
and compare learned subnetworks with circuits found by ACDC, EAP-IG or auto-circuit.

Importing this package imports none of transformer_lens, nnsight, matplotlib or pandas.
"""

from sc_interp import circuits, plot
from sc_interp._persist import bake, load_masks
from sc_interp._trace_path import TracePlan
from sc_interp.ablate import ablate, isolate
from sc_interp.adapters.nnsight import apply_in_trace
from sc_interp.analysis import test_compositionality
from sc_interp.circuits import compare
from sc_interp.data import Subtask
from sc_interp.errors import (
    AttachError,
    CircuitError,
    ConfigError,
    DataError,
    MaskFileError,
    MissingDependencyError,
    ScInterpError,
    TargetError,
    TrainingError,
    UnsupportedModelError,
)
from sc_interp.masks import MaskConfig, MaskSet, attach_masks, list_sites
from sc_interp.report import CompositionalityReport
from sc_interp.sites import Site
from sc_interp.subnetwork import Subnetwork
from sc_interp.train import Evaluation, TrainConfig, evaluate, train_masks

# the one source of the version: the wheel's metadata (hatch) and mask files read it
__version__ = "0.1.0"
"""The installed version of sc-interp (mask files record it)."""

__all__ = [
    "AttachError",
    "CircuitError",
    "CompositionalityReport",
    "ConfigError",
    "DataError",
    "Evaluation",
    "MaskConfig",
    "MaskFileError",
    "MaskSet",
    "MissingDependencyError",
    "ScInterpError",
    "Site",
    "Subnetwork",
    "Subtask",
    "TargetError",
    "TracePlan",
    "TrainConfig",
    "TrainingError",
    "UnsupportedModelError",
    "__version__",
    "ablate",
    "apply_in_trace",
    "attach_masks",
    "bake",
    "circuits",
    "compare",
    "evaluate",
    "isolate",
    "list_sites",
    "load_masks",
    "plot",
    "test_compositionality",
    "train_masks",
]
