"""Mask files on disk: safetensors, recognised by their structure, never unpickled.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes of JSON
(a dict: ``__metadata__`` maps strings to strings; every other key names a tensor with
``dtype``, ``shape`` and ``data_offsets``), then the tensor bytes, which the offsets must
cover exactly. :func:`check_structure` verifies all of that before safetensors' own parser
(``safe_open``) reads the file, so pickles (``torch.save``'s old format starts with 0x80),
zip archives (``torch.save``'s default), truncated files and headers that lie about their
length are refused with :class:`~sc_interp.errors.MaskFileError`. The first byte alone
decides nothing: a valid file whose header length happens to start with 0x80 loads.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from sc_interp.errors import ConfigError, MaskFileError

METADATA_KEY = "__metadata__"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
_FOREIGN = {
    b"PK\x03\x04": "a zip archive (torch.save's format)",
    b"\x80": "a pickle (torch.save's legacy format)",
}


def _refuse(path: Path, head: bytes, why: str) -> MaskFileError:
    looks = next((what for magic, what in _FOREIGN.items() if head.startswith(magic)), None)
    hint = (
        f"; it looks like {looks}: sc-interp never unpickles files (they can run arbitrary "
        "code). Save masks with MaskSet.save / Subnetwork.save."
        if looks
        else ""
    )
    return MaskFileError(f"{path} is not a valid safetensors mask file: {why}{hint}")


def _tensor_entry(name: str, entry: object) -> tuple[int, int, int]:
    """``(begin, end, expected bytes)`` of one header entry, or ValueError naming the flaw."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise ValueError(f"entry {name!r} is not {{dtype, shape, data_offsets}}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in _DTYPE_BYTES:
        raise ValueError(f"entry {name!r} has unknown dtype {dtype!r}")
    ints = [*shape, *offsets] if isinstance(shape, list) and isinstance(offsets, list) else None
    if ints is None or not all(isinstance(i, int) and not isinstance(i, bool) for i in ints):
        raise ValueError(f"entry {name!r}: shape and data_offsets must be lists of integers")
    if len(offsets) != 2 or min(ints, default=0) < 0 or offsets[0] > offsets[1]:
        raise ValueError(f"entry {name!r}: bad shape {shape} or data_offsets {offsets}")
    numel = 1
    for d in shape:
        numel *= d
    return offsets[0], offsets[1], numel * _DTYPE_BYTES[dtype]


def check_structure(path: Path) -> None:
    """Raise :class:`MaskFileError` unless ``path`` is a well-formed safetensors file.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "m.safetensors"
        >>> _ = write(p, {"fc": torch.zeros(3)}, {"unit": "neuron"})
        >>> check_structure(p)
        >>> _ = p.write_bytes(b"\\x80\\x04K\\x01.")  # a pickle of the number 1
        >>> check_structure(p)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        sc_interp.errors.MaskFileError: ... it looks like a pickle ...
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise _refuse(path, prefix, f"{size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", prefix)
        if n < 2 or n > _MAX_HEADER or 8 + n > size:
            raise _refuse(path, prefix, f"header length {n} does not fit a {size}-byte file")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        meta = header.pop(METADATA_KEY, {})
        if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
        ):
            raise ValueError(f"{METADATA_KEY} must map strings to strings")
        spans = sorted(_tensor_entry(name, entry) for name, entry in header.items())
        position = 0
        for begin, end, expected in spans:
            if begin != position or end - begin != expected:
                raise ValueError(f"tensor data at bytes [{begin}, {end}) is not contiguous")
            position = end
        if 8 + n + position != size:
            raise ValueError(f"tensor data ends at byte {8 + n + position}, the file at {size}")
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise _refuse(path, prefix, str(exc)) from None


def write(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Path:
    """Write ``tensors`` with JSON-encoded ``metadata`` as a safetensors file, atomically."""
    from safetensors.torch import save_file

    if METADATA_KEY in tensors:
        raise MaskFileError(f"a site may not be named {METADATA_KEY!r} (safetensors reserves it)")
    path = Path(path)
    try:
        meta = {k: json.dumps(v) for k, v in metadata.items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot store the metadata as JSON ({exc})") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder for {path}: {exc}") from None
    # write beside the target and rename, so a failure never leaves a half-written file
    # where the user's previous one was
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        # ``meta or None``: safetensors 0.8 writes broken JSON for no tensors and ``{}``
        data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(data, str(tmp), meta or None)
        os.replace(tmp, path)
    except OSError as exc:
        raise MaskFileError(f"cannot write {path}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`write`: tensors and JSON-decoded metadata.

    Raises:
        MaskFileError: the file is missing, not safetensors (a pickle, a zip archive,
            truncated, a header that lies) or its metadata is not JSON.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise MaskFileError(f"no such mask file: {path}")
    check_structure(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw_meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise MaskFileError(f"{path} is not a valid safetensors file: {exc}") from None
    try:
        meta = {k: json.loads(v) for k, v in raw_meta.items()}
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise MaskFileError(f"{path}: metadata is not sc-interp's ({type(exc).__name__})") from None
    return tensors, meta


def version() -> str:
    """The sc-interp version (``sc_interp.__version__``, also the distribution's metadata)."""
    import sc_interp  # not at module level: sc_interp/__init__.py imports this module

    return sc_interp.__version__


def meta_field(meta: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    """``meta[key]`` if present and of ``kind``; else a MaskFileError naming the field."""
    if key not in meta:
        raise MaskFileError(f"{path}: the metadata has no {key!r} field; not an sc-interp file?")
    value = meta[key]
    if not isinstance(value, kind):
        raise MaskFileError(
            f"{path}: metadata field {key!r} is a {type(value).__name__}, expected "
            f"{kind.__name__ if isinstance(kind, type) else ' or '.join(k.__name__ for k in kind)}"
        )
    return value


def site_names(meta: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path) -> list[str]:
    """The metadata's site list: strings, each with a tensor in the file."""
    sites = meta_field(meta, "sites", list, path)
    if not sites or not all(isinstance(x, str) for x in sites):
        raise MaskFileError(f"{path}: metadata 'sites' must be a non-empty list of site names")
    missing = [x for x in sites if x not in tensors]
    if missing:
        raise MaskFileError(f"{path}: metadata names sites with no tensor: {missing[:5]}")
    return sites
