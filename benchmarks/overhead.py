"""Mask-training overhead on a small TransformerLens model, as ratios measured in one run.

Run: python benchmarks/overhead.py [--steps 20] [--batch 32] [--memory]   (= `sc-interp bench`)
"""

from __future__ import annotations

import argparse

from sc_interp.bench.overhead import overhead_table

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--memory", action="store_true", help="also peak memory (Linux)")
    args = parser.parse_args()
    print(overhead_table(steps=args.steps, batch=args.batch, memory=args.memory))
