"""Shared fixtures: tiny models of every supported family, built from config (no downloads)."""

from __future__ import annotations

import importlib.util
import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import sc_interp

if os.environ.get("SC_INTERP_EXPECT_INSTALLED"):  # .ci/run: tests of the installed wheel
    _site = Path(sysconfig.get_paths()["purelib"]).resolve()
    if not Path(sc_interp.__file__).resolve().is_relative_to(_site):
        raise RuntimeError(f"sc_interp imported from {sc_interp.__file__}, not from {_site}")

HAS_NNSIGHT = importlib.util.find_spec("nnsight") is not None


def _tl_major() -> int:
    try:
        from importlib.metadata import version

        return int(version("transformer-lens").split(".")[0])
    except Exception:
        return 0


TL_MAJOR = _tl_major()
needs_tl4 = pytest.mark.skipif(TL_MAJOR < 4, reason="needs transformer-lens 4 (TransformerBridge)")
needs_tl3 = pytest.mark.skipif(
    TL_MAJOR == 0 or TL_MAJOR >= 4, reason="needs transformer-lens<4 (HookedTransformer)"
)
needs_nnsight = pytest.mark.skipif(not HAS_NNSIGHT, reason="needs nnsight")

TL_CFG = dict(
    d_model=16, d_head=4, n_heads=4, n_layers=2, n_ctx=8, d_vocab=20, d_mlp=32, act_fn="relu"
)


class TinyNet(nn.Module):
    """Conv2d -> ReLU -> Linear -> ReLU -> Linear: every plain-torch layer kind we mask."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(3 * 4 * 4, 8)
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.relu(self.fc1(h)))


def make_torch() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet()


def make_bridge(seed: int = 0) -> nn.Module:
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_native(TransformerBridgeConfig(**TL_CFG, seed=seed))


def make_hooked(seed: int = 0) -> nn.Module:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    return HookedTransformer(HookedTransformerConfig(**TL_CFG, seed=seed))


def torch_input() -> torch.Tensor:
    return torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(1))


def token_input() -> torch.Tensor:
    return torch.randint(0, 20, (3, 6), generator=torch.Generator().manual_seed(1))


@pytest.fixture
def torch_model() -> nn.Module:
    return make_torch()


@pytest.fixture
def bridge() -> nn.Module:
    if TL_MAJOR < 4:
        pytest.skip("needs transformer-lens 4")
    return make_bridge()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module's tests: on a busy 2-core machine this is faster and
    keeps timings stable (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
