"""Peak memory of edge-mask training on a GPT-2-small-shaped TL4 bridge (CPU, from config).

    python benchmarks/edges_gpt2_memory.py BATCH POSITIONS

Measured on the 2-core machine (2026-12-01): 32491 edges; batch 4 x 64 tokens: peak RSS
3.72 GiB (1.30 GiB with the model alone), 16.9 s per step; batch 8 x 128: 5.16 GiB, 66.7 s.
"""

import resource
import sys
import time

import torch
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.model_bridge import TransformerBridge

import sc_interp as sc

batch, pos = int(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
cfg = TransformerBridgeConfig(
    d_model=768,
    d_head=64,
    n_heads=12,
    n_layers=12,
    n_ctx=1024,
    d_vocab=50257,
    d_mlp=3072,
    act_fn="gelu",
    seed=0,
)
model = TransformerBridge.boot_native(cfg)
for p in model.parameters():
    p.requires_grad_(False)
x = torch.randint(0, 50257, (batch, pos))
y = torch.randint(0, 50257, (batch,))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
with sc.attach_masks(model, sc.MaskConfig(unit="edge")) as masks:
    n_edges = sum(m.numel() for m in masks.logits.values())
    opt = torch.optim.Adam(masks.parameters(), lr=0.05)
    t = time.time()
    for _ in range(2):
        out = model(x)[:, -1]
        loss = torch.nn.functional.cross_entropy(out, y) + 0.1 * masks.l0(normalize=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dt = (time.time() - t) / 2
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(
    f"GPT-2-small shape, {n_edges} edges, batch {batch} x {pos} tokens: peak RSS {peak:.2f} GiB "
    f"(model loaded: {base:.2f} GiB), {dt:.1f} s per step"
)
