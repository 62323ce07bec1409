"""sc-interp and NeuroSurgeon compute the same thing from the same mask logits.

This is what makes ``benchmarks/vs_neurosurgeon.py`` a like-for-like comparison: with one
set of logits copied into both libraries, hard-mask (eval) outputs agree, and so do the
soft-mask (train) losses and the gradients on the logits. Skipped without NeuroSurgeon
(``pip install --no-deps neurosurgeon==0.1.0``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import sc_interp as sc

pytest.importorskip("NeuroSurgeon")
transformers = pytest.importorskip("transformers")

from NeuroSurgeon.Models.circuit_model import CircuitModel  # noqa: E402
from NeuroSurgeon.Models.model_configs import CircuitConfig  # noqa: E402


class ConvMLP(nn.Module):
    """Conv2d -> Linear -> Linear, the plain-torch layer kinds both libraries mask."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(4 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x: Tensor, return_dict: bool = True) -> Tensor:
        # ``return_dict``: NeuroSurgeon's CircuitModel always passes it; ignored here
        h = torch.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.relu(self.fc1(h)))


@dataclass
class Case:
    model: nn.Module
    inputs: dict[str, Tensor]
    output: Callable[[Any], Tensor]  # (model or CircuitModel) -> output tensor
    sc_targets: list[str]
    ns_layers: list[str]


def gpt2_case() -> Case:
    transformers.logging.set_verbosity_error()
    cfg = transformers.GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=4,
        vocab_size=50,
        n_positions=16,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    tokens = torch.randint(0, 50, (3, 10), generator=torch.Generator().manual_seed(1))
    inputs = {"input_ids": tokens}
    return Case(
        model=model,
        inputs=inputs,
        output=lambda m: m(**inputs).logits,
        sc_targets=["transformer.h.*.attn.c_*.weight", "transformer.h.*.mlp.c_*.weight"],
        ns_layers=[
            f"transformer.h.{i}.{m}"
            for i in range(2)
            for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
        ],
    )


def conv_mlp_case() -> Case:
    torch.manual_seed(0)
    model = ConvMLP().eval()
    inputs = {"x": torch.randn(6, 2, 4, 4, generator=torch.Generator().manual_seed(1))}
    return Case(
        model=model,
        inputs=inputs,
        output=lambda m: m(**inputs),
        sc_targets=["conv.weight", "fc1.weight", "fc2.weight"],
        ns_layers=["conv", "fc1", "fc2"],
    )


CASES = {"gpt2": gpt2_case, "conv_mlp": conv_mlp_case}


def attach_both(case: Case, seed: int = 0) -> tuple[sc.MaskSet, Any, nn.Module]:
    """Both libraries on their own copy, with the same random logits (about half kept).

    Returns the sc-interp MaskSet, the NeuroSurgeon CircuitModel and an unmasked copy.
    """
    sc_model, ns_model, plain = (copy.deepcopy(case.model) for _ in range(3))
    masks = sc.attach_masks(sc_model, sc.MaskConfig(unit="weight", targets=case.sc_targets))
    circuit = CircuitModel(
        CircuitConfig(
            mask_method="continuous_sparsification",
            mask_hparams={
                "ablation": "none",
                "mask_unit": "weight",
                "mask_bias": False,
                "mask_init_value": 0.05,
            },
            target_layers=case.ns_layers,
            freeze_base=True,
            add_l0=False,
        ),
        ns_model,
    )
    assert sorted(masks.logits) == sorted(f"{layer}.weight" for layer in case.ns_layers)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, logits in masks.logits.items():
            # NeuroSurgeon keeps each layer's logits on the replaced layer itself
            ns_logits = circuit.wrapped_model.get_submodule(
                name.removesuffix(".weight")
            ).weight_mask_params
            assert ns_logits.shape == logits.shape
            values = torch.randn(logits.shape, generator=gen)
            logits.copy_(values)
            ns_logits.copy_(values)
    return masks, circuit, plain


@pytest.mark.parametrize("case_name", list(CASES))
def test_hard_mask_outputs_agree(case_name: str) -> None:
    case = CASES[case_name]()
    masks, circuit, plain = attach_both(case)
    masks.eval()
    circuit.eval()
    with torch.no_grad():
        ours = case.output(masks.model)
        theirs = case.output(circuit)
        unmasked = case.output(plain)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # the masks really act: about half of every masked weight is gone
    assert (ours - unmasked).abs().max() > 1e-2
    assert 0.3 < masks.density() < 0.7


@pytest.mark.parametrize("case_name", list(CASES))
def test_soft_mask_training_agrees(case_name: str) -> None:
    # sc-interp's ``beta`` is NeuroSurgeon's ``temperature``: mask = sigmoid(beta * s)
    case = CASES[case_name]()
    masks, circuit, _ = attach_both(case)
    masks.train()
    circuit.train()
    masks.beta = 2.5
    circuit.temperature = 2.5
    l0_ns = sum(
        circuit.wrapped_model.get_submodule(layer).calculate_l0() for layer in case.ns_layers
    )
    torch.testing.assert_close(masks.l0(), l0_ns)
    ours = case.output(masks.model).pow(2).mean()
    theirs = case.output(circuit).pow(2).mean()
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    for name, logits in masks.logits.items():
        ns_logits = circuit.wrapped_model.get_submodule(
            name.removesuffix(".weight")
        ).weight_mask_params
        assert logits.grad is not None and ns_logits.grad is not None
        assert logits.grad.abs().max() > 0
        torch.testing.assert_close(logits.grad, ns_logits.grad, rtol=1e-4, atol=1e-7)
