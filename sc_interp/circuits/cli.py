"""Body of ``sc-interp compare SUBNETWORK CIRCUIT [--model CONFIG]`` (wired in ``sc_interp.cli``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from sc_interp.circuits._subnetwork import split_masks
from sc_interp.circuits.compare import compare
from sc_interp.circuits.formats import load
from sc_interp.errors import CircuitError

if TYPE_CHECKING:
    import pandas


def _read_config(path: str) -> dict:
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CircuitError(f"cannot read model config {path!r}: {exc}") from exc
    if not isinstance(config, dict):
        raise CircuitError(f"model config {path!r} must be a JSON object of TL config fields")
    return config


def _read_subnetwork(path: str) -> object:
    if not path.endswith(".safetensors"):
        return load(path)
    from sc_interp._safetensors import read
    from sc_interp.errors import ConfigError, MaskFileError
    from sc_interp.sites import UnitMap

    try:
        tensors, meta = read(path)  # recognised by structure; never unpickled
        # Subnetwork and MaskSet files record each site's units (Hugging Face layouts)
        units = {name: UnitMap(**spec) for name, spec in (meta.get("units") or {}).items()}
    except (MaskFileError, ConfigError, TypeError, AttributeError) as exc:
        raise CircuitError(f"cannot read subnetwork {path!r}: {exc}") from exc
    masks, logits = split_masks(tensors)

    class _Subnetwork:  # the shape compare() reads: .masks, optional .logits and .units
        def __init__(self) -> None:
            self.masks, self.logits, self.units = masks, logits, units

    return _Subnetwork()


def compare_command(
    subnetwork_path: str, circuit_path: str, model_config: str | None
) -> pandas.DataFrame:
    """Compare a subnetwork file with a circuit file, as ``sc-interp compare`` does.

    Args:
        subnetwork_path: a ``.safetensors`` mask file (bool or 0/1 tensors are masks,
            float tensors are logits with masks ``logits > 0``), or a circuit file.
        circuit_path: the reference circuit (any format :func:`~sc_interp.circuits.load`
            reads).
        model_config: optional JSON file with TransformerLens config fields
            (``n_layers``, ``n_heads``, ``d_mlp``...), used to validate both sides.

    Returns:
        The table of :func:`sc_interp.circuits.compare`.

    Example:
        >>> import json, os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> a, b = os.path.join(d, "a.json"), os.path.join(d, "b.json")
        >>> _ = open(a, "w").write(json.dumps(["a0.h1"]))
        >>> _ = open(b, "w").write(json.dumps([[0, 1]]))
        >>> float(compare_command(a, b, None).loc[0, "iou"])
        1.0
    """
    model = _read_config(model_config) if model_config else None
    return compare(_read_subnetwork(subnetwork_path), load(circuit_path), model)
