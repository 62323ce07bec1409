"""A fuzz harness over sc-interp's public API: bad input and faults, as a hostile user.

Two invariants, checked for every case:

1. only ScInterpError subclasses (or the user's own exceptions, unchanged) escape;
2. after a failure, the model is exactly as before: parameter values, identities, order and
   ``requires_grad``; module train flags and classes; hooks and parametrizations.

``tests/test_fuzz.py`` runs it under hypothesis (a short profile by default, a long one in
CI); ``python tests/fuzz_harness.py --cases N`` runs N random cases and prints the counts.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import sc_interp as sc
from sc_interp.adapters import resolve


class UserError(Exception):
    """Raised by the user's own callables: must escape unchanged."""


# ----------------------------------------------------------------------------- models
class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.norm = nn.LayerNorm(8)
        self.fc2 = nn.Linear(8, 4)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(torch.relu(self.norm(self.fc1(x)))))


def make_model(kind: str) -> Any:
    """A tiny model of ``kind``, run once (TL's bridge wires hooks of its own on first use)."""
    torch.manual_seed(0)
    if kind == "torch":
        model: Any = Tiny()
    elif kind == "bridge":
        from conftest import make_bridge

        model = make_bridge()
    elif kind == "nnsight":
        from nnsight import NNsight

        model = NNsight(Tiny())
    else:
        raise ValueError(kind)
    sc.evaluate(model, valid_task(kind))
    return model


def inputs(kind: str, n: int, gen: torch.Generator) -> torch.Tensor:
    if kind == "bridge":
        return torch.randint(0, 20, (n, 6), generator=gen)
    return torch.randn(n, 6, generator=gen)


def n_classes(kind: str) -> int:
    return 20 if kind == "bridge" else 4


def valid_task(kind: str, n: int = 16, name: str = "t") -> sc.Subtask:
    gen = torch.Generator().manual_seed(1)
    x = inputs(kind, n, gen)
    y = torch.randint(0, n_classes(kind), (n,), generator=gen)
    return sc.Subtask(name, (x, y), (x, y), chance=0.25, batch_size=8)


# --------------------------------------------------------------------------- snapshot
@dataclass(frozen=True)
class Snapshot:
    params: tuple[tuple[str, int, bool, bytes], ...]
    buffers: tuple[tuple[str, bytes], ...]
    modules: tuple[tuple[str, str, bool, int, int, int, int, bool], ...]

    def diff(self, other: Snapshot) -> str | None:
        for label, a, b in (("parameters", self.params, other.params),
                            ("buffers", self.buffers, other.buffers),
                            ("modules", self.modules, other.modules)):  # fmt: skip
            if a != b:
                changed = [x[0] for x, y in zip(a, b, strict=False) if x != y] or ["(count)"]
                return f"{label} changed: {changed[:4]}"
        return None


def snapshot(model: Any) -> Snapshot:
    root = resolve(model)
    params = tuple(
        (name, id(p), p.requires_grad, p.detach().cpu().numpy().tobytes())
        for name, p in root.named_parameters(remove_duplicate=False)
    )
    buffers = tuple((name, b.detach().cpu().numpy().tobytes()) for name, b in root.named_buffers())
    modules = tuple(
        (name, type(m).__name__, m.training, len(m._forward_hooks), len(m._forward_pre_hooks),
         len(m._backward_hooks), len(getattr(m, "_parameters", {})),
         bool(getattr(m, "parametrizations", None)))
        for name, m in root.named_modules(remove_duplicate=False)
    )  # fmt: skip
    return Snapshot(params, buffers, modules)


# ------------------------------------------------------------------------------ cases
@dataclass
class Outcome:
    kind: str  # "ok", "clean error", "wrong type", "leak"
    detail: str = ""


def run_case(model: Any, call: Callable[[], Any], allowed: tuple[type, ...] = ()) -> Outcome:
    """Run ``call``; classify what escaped and whether the model is unchanged after an error."""
    before = snapshot(model)
    try:
        call()
    except (sc.ScInterpError, UserError, *allowed) as exc:
        after = snapshot(model)
        leak = before.diff(after)
        if leak:
            return Outcome("leak", f"{type(exc).__name__}: {leak}")
        return Outcome("clean error", type(exc).__name__)
    except KeyboardInterrupt:
        leak = before.diff(snapshot(model))
        return (
            Outcome("leak", f"KeyboardInterrupt: {leak}")
            if leak
            else Outcome("clean error", "KeyboardInterrupt")
        )
    except BaseException as exc:
        return Outcome("wrong type", f"{type(exc).__name__}: {str(exc)[:160]}")
    leak = before.diff(snapshot(model))
    return Outcome("leak", f"success left: {leak}") if leak else Outcome("ok")


# value pools: valid values first, then the bad ones
UNITS = ["neuron", "weight", "head", "neurons", "", None, 3, "WEIGHT"]
TARGETS: list[Any] = [
    None,
    ["fc1"],
    ["*"],
    [],
    ["nope*"],
    "fc1",
    [3],
    ["fc1", ""],
    ("fc2",),
    [None],
]
RELAX = ["continuous", "hard_concrete", "straight_through", "l0", None, 1]
NUMBERS: list[Any] = [0.05, 1.0, -0.05, 0, np.float32(0.1), np.int64(2), math.nan, math.inf,
                      -math.inf, 1e39, -1e39, "0.1", None, True, [0.1], 1e-300]  # fmt: skip
INTS: list[Any] = [1, 2, np.int64(1), 0, -1, 1.5, 10**12, "2", None, True, math.nan, 2.0]
METHODS = ["zero", "mean", "resample", "random", "median", None, 0]
PATH_KINDS = ["valid", "missing", "directory", "random-bytes", "pickle", "zip", "empty",
              "truncated", "other-model", "none", "int", "json"]  # fmt: skip


def mask_config_kwargs(pick: Callable[[list[Any]], Any]) -> dict[str, Any]:
    return {"unit": pick(UNITS), "targets": pick(TARGETS), "relaxation": pick(RELAX),
            "init": pick(NUMBERS)}  # fmt: skip


def train_config_kwargs(pick: Callable[[list[Any]], Any]) -> dict[str, Any]:
    return {"epochs": pick(INTS[:3] + INTS), "lr": pick(NUMBERS), "l0": pick(NUMBERS),
            "beta_max": pick([200.0, 1.0, *NUMBERS]), "batch_size": pick([None, *INTS]),
            "seed": pick([0, 1, np.int64(3), -1, "x", 1.5, None, 2**70]),
            "progress": False, "eval_every": pick([1, 0, *INTS])}  # fmt: skip


def bad_file(kind: str, directory: Path, model: Any) -> Any:
    path = directory / f"{kind}.safetensors"
    if kind == "valid":
        with sc.attach_masks(model, sc.MaskConfig(unit="neuron")) as m:
            return m.save(path)
    if kind == "missing":
        return directory / "nope.safetensors"
    if kind == "directory":
        return directory
    if kind == "random-bytes":
        path.write_bytes(os.urandom(64))
    elif kind == "pickle":
        import pickle

        path.write_bytes(pickle.dumps({"a": 1}))
    elif kind == "zip":
        path.write_bytes(b"PK\x03\x04" + os.urandom(40))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        with sc.attach_masks(model, sc.MaskConfig(unit="neuron")) as m:
            data = m.save(path).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "other-model":
        other = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
        with sc.attach_masks(other, sc.MaskConfig(unit="neuron")) as m:
            return m.save(path)
    elif kind == "none":
        return None
    elif kind == "int":
        return 7
    elif kind == "json":
        path.write_text('{"not": "safetensors"}')
    return path


def cases(
    kind: str, pick: Callable[[list[Any]], Any], tmp: Path
) -> list[tuple[str, Callable[[Any], Any]]]:
    """(name, call(model)) pairs; each call uses the pools through ``pick``."""
    task = valid_task(kind)
    units = ["neuron", "weight", "head"] if kind == "bridge" else ["neuron", "weight"]

    def attach(model: Any) -> None:
        with sc.attach_masks(model, sc.MaskConfig(**mask_config_kwargs(pick))):
            raise UserError("inside the block")

    def train(model: Any) -> None:
        cfg = sc.MaskConfig(unit=pick(units))
        sc.train_masks(
            model,
            cfg,
            pick([task, bad_task(kind, pick)]),
            sc.TrainConfig(**train_config_kwargs(pick)),
        )

    def evaluate(model: Any) -> None:
        sc.evaluate(model, pick([task, bad_task(kind, pick), (task.test), None, "t"]),
                    pick(["test", "train", "val", "", None]))  # fmt: skip

    def ablating(model: Any) -> None:
        mode = pick([sc.ablate, sc.isolate])
        site = sc.list_sites(model, "neuron")[0]
        sub = pick([
            {site.name: torch.ones(site.shape, dtype=torch.bool)},
            {site.name: torch.ones(site.shape)},
            {site.name: torch.tensor([False])},
            {site.name + "x": torch.ones(site.shape, dtype=torch.bool)},
            {}, None, "sub",
            sc.Subnetwork({site.name: torch.randn(site.shape)}, sc.MaskConfig(unit="neuron")),
            sc.Subnetwork({site.name: torch.randn(3)}, sc.MaskConfig(unit="neuron")),
            sc.Subnetwork({site.name: torch.randn(site.shape)}, sc.MaskConfig(unit="neuron"), fingerprint="0" * 16),
        ])  # fmt: skip
        data = pick(
            [None, task, inputs(kind, 8, torch.Generator().manual_seed(0)), torch.zeros(0), "x"]
        )
        with mode(model, sub, pick(METHODS), data=data, seed=pick([0, np.int64(1), -1, "s"])):
            sc.evaluate(model, task)
            if pick([True, False]):
                raise UserError("inside the block")

    def baking(model: Any) -> None:
        site = sc.list_sites(model, "neuron")[0]
        sub = sc.Subnetwork({site.name: torch.randn(site.shape)}, sc.MaskConfig(unit="neuron"))
        masks = sc.attach_masks(model, sc.MaskConfig(unit="neuron"))
        try:
            target = pick([masks, sub, None, {site.name: torch.ones(site.shape, dtype=torch.bool)}])
            sc.bake(model, target)
        finally:
            masks.detach()

    def loading(model: Any) -> None:
        path = bad_file(pick(PATH_KINDS), tmp, model)
        sc.load_masks(model, path).detach()

    def subnetwork_files(model: Any) -> None:
        path = bad_file(pick(PATH_KINDS), tmp, model)
        sub = sc.Subnetwork.load(path)
        sub.save(
            pick([tmp / "ok.safetensors", tmp, tmp / "missing" / "deep" / "x.safetensors", None, 3])
        )

    def tracing(model: Any) -> None:
        site = sc.list_sites(model, "neuron")[0]
        sub = sc.Subnetwork({site.name: torch.randn(site.shape)}, sc.MaskConfig(unit="neuron"))
        sc.apply_in_trace(
            model, pick([sub, None, {site.name: torch.ones(site.shape, dtype=torch.bool)}, "m"])
        )

    def comparing(model: Any) -> None:
        site = sc.list_sites(model, "neuron")[0]
        sub = sc.Subnetwork({site.name: torch.randn(site.shape)}, sc.MaskConfig(unit="neuron"))
        circuit = pick(
            [["a0.h0"], {"a0.h0->m1": 0.2}, [], None, "nope.json", [("x", "y")], 3, ["a99.h99"]]
        )
        sc.compare(pick([sub, None, "x"]), circuit, model=pick([model, None]))

    def eap(model: Any) -> None:
        site = sc.list_sites(model, "neuron")[0]
        sub = sc.Subnetwork({site.name: torch.randn(site.shape)}, sc.MaskConfig(unit="neuron"))
        sc.circuits.to_eap_json(sub, pick([tmp / "g.json", tmp, None]), model=pick([model, None]),
                                n_layers=pick([None, 2, 0, -1, 10**4, 1.5]))  # fmt: skip

    def sites(model: Any) -> None:
        sc.list_sites(model, pick(UNITS))

    def study(model: Any) -> None:
        a, b = valid_task(kind, name="a"), valid_task(kind, name=pick(["b", "a"]))
        sc.test_compositionality(
            model, a, pick([b, None, "b"]), mask=sc.MaskConfig(unit="neuron"),
            train=sc.TrainConfig(epochs=1, progress=False), seeds=pick([1, 0, [], [0], -1, "s"]),
            controls=pick([(), ("random_init",), ("nope",), "random_init"]),
            n_random=pick([10, 0, 3, -1]), margin=pick([0.1, 0.0, 2.0, math.nan]), n_boot=pick([50, 0, -5]),
        )  # fmt: skip

    return [("attach_masks", attach), ("train_masks", train), ("evaluate", evaluate),
            ("ablate/isolate", ablating), ("bake", baking), ("load_masks", loading),
            ("Subnetwork files", subnetwork_files), ("apply_in_trace", tracing),
            ("compare", comparing), ("to_eap_json", eap), ("list_sites", sites),
            ("test_compositionality", study)]  # fmt: skip


def bad_task(kind: str, pick: Callable[[list[Any]], Any]) -> Any:
    """A Subtask that is broken in one way, or the exception its construction raises."""
    gen = torch.Generator().manual_seed(2)
    x, y = inputs(kind, 8, gen), torch.randint(0, n_classes(kind), (8,), generator=gen)
    variant = pick(["labels out of range", "float labels", "nan inputs", "empty", "mismatch",
                    "user loss raises", "user data raises", "readout raises", "chance", "interrupt"])  # fmt: skip

    def raising(*_: Any) -> Any:
        raise UserError("from the user's own code")

    def interrupting(*_: Any) -> Any:
        raise KeyboardInterrupt

    try:
        if variant == "labels out of range":
            return sc.Subtask("bad", (x, y + 100), (x, y + 100))
        if variant == "float labels":
            return sc.Subtask("bad", (x, y.float()), (x, y.float()))
        if variant == "nan inputs":
            xf = x.float() if kind != "bridge" else x
            if kind != "bridge":
                xf[0, 0] = math.nan
            return sc.Subtask("bad", (xf, y), (xf, y))
        if variant == "empty":
            return sc.Subtask("bad", (x[:0], y[:0]), (x, y))
        if variant == "mismatch":
            return sc.Subtask("bad", (x, y[:3]), (x, y))
        if variant == "user loss raises":
            return sc.Subtask("bad", (x, y), (x, y), loss=raising)
        if variant == "user data raises":
            return sc.Subtask("bad", raising, (x, y))
        if variant == "readout raises":
            return sc.Subtask("bad", (x, y), (x, y), readout=raising)
        if variant == "interrupt":
            return sc.Subtask("bad", (x, y), (x, y), loss=interrupting)
        return sc.Subtask(
            "bad", (x, y), (x, y), chance=pick([np.float32(0.5), 0.0, 1.5, math.nan, "x"])
        )
    except sc.ScInterpError as exc:
        return exc


def run_random(n_cases: int, seed: int = 0) -> dict[str, Any]:
    """Run ``n_cases`` random cases over every model kind; count the outcomes."""
    rng = np.random.default_rng(seed)

    def pick(pool: list[Any]) -> Any:
        return pool[int(rng.integers(len(pool)))]

    kinds = ["torch", "bridge", "nnsight"]
    counts: dict[str, int] = {"cases": 0, "ok": 0, "clean error": 0, "wrong type": 0, "leak": 0}
    problems: dict[str, int] = {}
    models = {k: make_model(k) for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n_cases):
            kind = kinds[i % len(kinds)]
            name, call = pick(cases(kind, pick, Path(tmp)))
            out = run_case(models[kind], lambda call=call, kind=kind: call(models[kind]))
            counts["cases"] += 1
            counts[out.kind] += 1
            if out.kind in ("wrong type", "leak"):
                key = f"{out.kind} | {kind} | {name} | {out.detail[:100]}"
                problems[key] = problems.get(key, 0) + 1
    return {"counts": counts, "problems": problems}


if __name__ == "__main__":  # pragma: no cover - a command-line report
    import argparse
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = run_random(args.cases, args.seed)
    print(result["counts"])
    for key, n in sorted(result["problems"].items(), key=lambda kv: -kv[1]):
        print(f"{n:5d}  {key}")
