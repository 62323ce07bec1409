"""Benchmarks behind ``sc-interp bench``: mask training steps as ratios to plain floors.

Not part of the library's core: nothing in :mod:`sc_interp` imports this subpackage, and its
modules import the core, never the reverse.

- :mod:`sc_interp.bench.overhead`: every DESIGN §5 ratio on a small TransformerLens 4 model
  (``sc-interp bench``);
- :mod:`sc_interp.bench.shapes`: weight- and neuron-mask ratios on a plain MLP, a CNN, a
  TransformerLens 4 bridge and a Hugging Face GPT-2 shape for several batch sizes
  (``sc-interp bench --shapes``), as a markdown table and a CSV file;
- :mod:`sc_interp.bench.memory`: peak-memory ratios, each variant in a fresh process
  (``sc-interp bench --memory``).

Every timing interleaves the variants step by step (order rotated each step), so machine
load hits them alike; the reported figure is the median.
"""
