"""Planted models: hand-set networks whose subnetworks we know in advance.

:func:`planted_mlp` builds an MLP whose hidden units 0-7 compute feature A and 8-15
compute feature B, with one output head per subtask; :func:`planted_tasks` builds the two
subtasks. With ``shared=True`` both subtasks read the same units (no modularity), the
negative control for compositionality tests. They back the known-answer tests and the
``sc-interp train --toy`` command.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sc_interp.data import Subtask

N_FEATURES = 4  # input dims per property
A_UNITS = tuple(range(0, 8))
B_UNITS = tuple(range(8, 16))


def planted_mlp(shared: bool = False, scale: float = 4.0, entangled: float = 0.0) -> nn.Sequential:
    """``Linear(8, 16) -> ReLU -> Linear(16, 4)`` with a planted circuit per subtask.

    Inputs are ``[a (4 dims), b (4 dims)]``. Hidden unit ``i < 4`` is ``relu(a_i)``,
    ``4 <= i < 8`` is ``relu(-a_i)``, and units 8-15 do the same for ``b``. Output logits
    0-1 give ``(-sum a, +sum a)`` (subtask A's head) and 2-3 ``(-sum b, +sum b)`` (B's head).
    With ``shared=True``, B's head reads A's units too (and units 8-15 are unused).

    With ``entangled=k > 0`` the A units carry a constant 10 on top (``10 + a_i``,
    ``10 - a_i``, which A's head cancels), and B's "+" logit reads ``k`` times their sum
    (a constant 80) against a bias of ``-80 k``: the full model is unchanged, but ablating
    A's units shifts B's logit by ``-80 k``, so B breaks partly with A (at ``k = 1/3`` B
    keeps about 0.55 accuracy). An entangled model must not come out compositional.

    Example:
        >>> net = planted_mlp()
        >>> net(torch.tensor([[1.0, 1, 1, 1, -1, -1, -1, -1]])).argmax(-1).item() in (1, 3)
        True
    """
    first, second = nn.Linear(2 * N_FEATURES, 16), nn.Linear(16, 4)
    net = nn.Sequential(first, nn.ReLU(), second)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        w1 = first.weight
        for i in range(N_FEATURES):
            w1[i, i], w1[i + 4, i] = 1.0, -1.0  # A units read a
            w1[i + 8, i + 4], w1[i + 12, i + 4] = 1.0, -1.0  # B units read b
        w2 = second.weight
        signed = torch.tensor([1.0] * 4 + [-1.0] * 4) * scale
        w2[1, :8], w2[0, :8] = signed, -signed
        b_units = slice(0, 8) if shared else slice(8, 16)
        w2[3, b_units], w2[2, b_units] = signed, -signed
        if entangled:
            first.bias[:8] = 10.0
            w2[3, :8] += entangled
            second.bias[3] = -80.0 * entangled
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _readout(lo: int) -> object:
    def readout(output: Tensor) -> Tensor:
        return output[:, lo : lo + 2]

    readout.__name__ = f"head_{lo // 2}"
    return readout


def planted_tasks(
    n_train: int = 512, n_test: int = 512, seed: int = 0, shared: bool = False
) -> tuple[Subtask, Subtask]:
    """Subtasks A (sign of ``sum a``, head 0) and B (sign of ``sum b``, head 1).

    With ``shared=True`` B's label is the sign of ``sum a`` too, so one set of units serves
    both subtasks. Chance is 0.5.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, 2 * N_FEATURES, generator=gen)
    a = (x[:, :N_FEATURES].sum(1) > 0).long()
    b = a if shared else (x[:, N_FEATURES:].sum(1) > 0).long()
    train, test = slice(0, n_train), slice(n_train, None)
    task_a = Subtask("A", (x[train], a[train]), (x[test], a[test]), chance=0.5, readout=_readout(0))  # type: ignore[arg-type]
    task_b = Subtask("B", (x[train], b[train]), (x[test], b[test]), chance=0.5, readout=_readout(2))  # type: ignore[arg-type]
    return task_a, task_b


def planted_bridge(n_tokens: int = 2048, seed: int = 0) -> tuple[nn.Module, Subtask, Subtask]:
    """A one-layer TransformerLens 4 bridge with hand-set weights and its two subtasks.

    Every input is ``[token, QUERY]``; each token carries random features ``a`` (4 dims)
    and ``b`` (4 dims). Head 0 copies ``a`` from position 0 to the query position, head 1
    copies ``b``; heads 2-3 are zero. MLP neurons 0-7 compute ``relu(+-a_i)`` and 8-15
    ``relu(+-b_i)``; the unembedding reads subtask A's logits (vocab ids 0-1) and B's
    (ids 2-3). So A's circuit is head 0 and neurons 0-7, B's is head 1 and neurons 8-15.
    No layer norms, so the circuit is exact.
    """
    model, params, feats, gen = _blank_bridge(n_layers=1, n_tokens=n_tokens, seed=seed)
    query = n_tokens
    with torch.no_grad():
        params["embed.weight"][query, 9] = 1.0  # query marker
        params["pos_embed.weight"][0, 8] = 1.0  # position-0 marker
        q, k = params["blocks.0.attn.q.weight"], params["blocks.0.attn.k.weight"]
        v, o = params["blocks.0.attn.v.weight"], params["blocks.0.attn.o.weight"]
        for h in (0, 1):  # rows/cols of head h are h*4 .. h*4+3
            q[h * 4, 9] = 40.0  # the query asks for position 0 ...
            k[h * 4, 8] = 1.0  # ... which alone carries the marker
            for i in range(4):
                v[h * 4 + i, h * 4 + i] = 1.0  # head 0 reads a, head 1 reads b
                o[10 + h * 4 + i, h * 4 + i] = 1.0  # written to dims 10-13 / 14-17
        _plant_mlp_readout(params, layer=0, a_dims=10, b_dims=14)
    return model, *_query_tasks(model, feats, query, gen)


def planted_path_bridge(n_tokens: int = 2048, seed: int = 0) -> tuple[nn.Module, Subtask, Subtask]:
    """A two-layer TransformerLens 4 bridge whose A-circuit is a path through two heads and
    an MLP, with its two subtasks (for edge masks).

    Inputs are ``[token, QUERY]``; each token carries features ``a`` and ``b`` (4 dims each).
    Queries and keys are zero, so every head attends uniformly (causally) and no query or key
    edge matters. Head ``a0.h0`` copies ``a`` into dims 10-13, ``a1.h0`` copies those into dims
    22-25, and MLP ``m1``'s neurons 0-7 turn them into A's logits (vocab ids 0-1); B's path is
    ``a0.h1 -> a1.h1 -> m1`` (neurons 8-15, ids 2-3). A's circuit is the four edges
    ``input->a0.h0<v>``, ``a0.h0->a1.h0<v>``, ``a1.h0->m1``, ``m1->logits``; every other edge
    carries nothing A needs. No layer norms.

    Example:
        >>> model, task_a, task_b = planted_path_bridge(n_tokens=64)  # doctest: +SKIP
    """
    model, params, feats, gen = _blank_bridge(n_layers=2, n_tokens=n_tokens, seed=seed)
    query = n_tokens
    with torch.no_grad():
        for layer, (src, dst) in enumerate(((0, 10), (10, 22))):
            v = params[f"blocks.{layer}.attn.v.weight"]
            o = params[f"blocks.{layer}.attn.o.weight"]
            for h in (0, 1):  # head h moves a (h=0) or b (h=1) on to the next dims
                for i in range(4):
                    v[h * 4 + i, src + h * 4 + i] = 1.0
                    o[dst + h * 4 + i, h * 4 + i] = 1.0
        _plant_mlp_readout(params, layer=1, a_dims=22, b_dims=26)
    return model, *_query_tasks(model, feats, query, gen)


def _blank_bridge(
    n_layers: int, n_tokens: int, seed: int
) -> tuple[nn.Module, dict[str, Tensor], Tensor, torch.Generator]:
    """A planted bridge's start: every weight zero but the token features ``a`` (dims 0-3)
    and ``b`` (dims 4-7) in the embedding; ``n_tokens`` is also the query token's id."""
    from sc_interp._demo import tiny_bridge

    model = tiny_bridge(
        seed, d_model=32, d_head=4, n_heads=4, n_layers=n_layers, n_ctx=2,
        d_vocab=n_tokens + 1, d_mlp=16, normalization_type=None,  # type: ignore[arg-type]
    )  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_tokens, 8, generator=gen)
    params = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for p in params.values():
            p.zero_()
        params["embed.weight"][:n_tokens, 0:8] = feats
    return model, params, feats, gen


def _plant_mlp_readout(params: dict[str, Tensor], layer: int, a_dims: int, b_dims: int) -> None:
    """MLP ``layer``: neurons 0-7 read ``+-a`` (4 dims from ``a_dims``), 8-15 ``+-b``, and
    write A's logits (vocab ids 0/1, dims 18/19) and B's (ids 2/3, dims 20/21)."""
    w_in, w_out = params[f"blocks.{layer}.mlp.in.weight"], params[f"blocks.{layer}.mlp.out.weight"]
    for i in range(4):
        w_in[i, a_dims + i], w_in[i + 4, a_dims + i] = 1.0, -1.0
        w_in[i + 8, b_dims + i], w_in[i + 12, b_dims + i] = 1.0, -1.0
    signed = torch.tensor([1.0] * 4 + [-1.0] * 4) * 4.0
    w_out[19, :8], w_out[18, :8] = signed, -signed
    w_out[21, 8:], w_out[20, 8:] = signed, -signed
    for vocab_id in range(4):
        params["unembed.weight"][vocab_id, 18 + vocab_id] = 1.0


def _query_tasks(
    model: nn.Module, feats: Tensor, query: int, gen: torch.Generator
) -> tuple[Subtask, Subtask]:
    """Freeze ``model``; subtasks A (sign of ``sum(a)``) and B (of ``sum(b)``) on
    ``[token, QUERY]`` inputs, read at the query position (A: ids 0-1, B: ids 2-3)."""
    for p in model.parameters():
        p.requires_grad_(False)
    n = 512
    tokens = torch.randint(0, query, (2 * n,), generator=gen)
    x = torch.stack([tokens, torch.full_like(tokens, query)], dim=1)
    a = (feats[tokens, 0:4].sum(1) > 0).long()
    b = (feats[tokens, 4:8].sum(1) > 0).long()

    def head(lo: int):
        def readout(output: Tensor) -> Tensor:
            return output[:, -1, lo : lo + 2]

        return readout

    task_a = Subtask("A", (x[:n], a[:n]), (x[n:], a[n:]), chance=0.5, readout=head(0))
    task_b = Subtask("B", (x[:n], b[:n]), (x[n:], b[n:]), chance=0.5, readout=head(2))
    return task_a, task_b
