"""The paper-size study on the built-in SVA task, timed (DESIGN §5: under 15 minutes on 2 CPU cores).

Three base models trained from scratch (seeds 0-2) on the compound task at the demo's sizes
(1000 train / 100 val / 400 test per set), then ``test_compositionality`` with weight masks,
3 mask seeds x 2 subroutines, both controls (a random-init copy per model and 10
size-matched random subnetworks per mask) and 1000 bootstrap draws, with the demo's
hyper-parameters. Prints the time of each stage and the verdicts.

    python benchmarks/study.py [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

import sc_interp as sc
from sc_interp.demo import FULL, L0
from sc_interp.tasks import build_task_model, make_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    task = make_task("sva", n_train=FULL.n_train, n_test=FULL.n_test, n_val=FULL.n_val, seed=0)
    models = [build_task_model(task, arm="scratch", seed=s, progress=False) for s in range(3)]
    built = time.perf_counter()
    a, b = (
        sc.Subtask(d.name, train=d, val=d, test=task.partition(k), chance=0.25)
        for k, d in (("a", task.a), ("b", task.b))
    )
    report = sc.test_compositionality(
        models, a, b,
        mask=sc.MaskConfig(unit="weight"),
        train=sc.TrainConfig(
            epochs=FULL.mask_epochs, lr=0.05, l0=L0[task.kind], l0_mean=False, progress=False
        ),
        seeds=FULL.seeds, n_random=FULL.n_random, n_boot=FULL.n_boot, seed=0, progress=False,
    )  # fmt: skip
    done = time.perf_counter()
    print(report)
    print(
        f"{torch.get_num_threads()} torch thread(s): base models {built - start:.0f} s, "
        f"test_compositionality {done - built:.0f} s, total {(done - start) / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
