"""Make the home page's figure (docs/assets/report.png) from a small real run.

    .venv/bin/python docs/scripts/make_figure.py

Subject-verb agreement (odd-one-out among 4 sentences), a tiny TransformerLens 4 model
pretrained as a language model on generated sentences and then trained on the compound
task; weight masks per subroutine (2 seeds), scored on the compound task's partitions,
with both controls. The report (report.md with the verdict table, CSVs) is written to
docs/assets/report/. About 12 minutes of CPU time (42 minutes on the shared 2-core machine);
the full-size run is ``sc-interp demo --arm pretrained``.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import sc_interp as sc  # noqa: E402
from sc_interp.tasks import build_task_model, make_task  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "assets"


def main() -> None:
    start = time.perf_counter()
    task = make_task("sva", n_train=600, n_test=200, n_val=100, seed=0)
    model = build_task_model(task, arm="pretrained", seed=0, epochs=6, pretrain_steps=200)
    subject = sc.Subtask("subject", train=task.a, val=task.a, test=task.partition("a"))
    verb = sc.Subtask("verb", train=task.b, val=task.b, test=task.partition("b"))
    report = sc.test_compositionality(
        model, subject, verb,
        mask=sc.MaskConfig(unit="weight"),
        train=sc.TrainConfig(epochs=6, lr=0.05, l0=1e-4, l0_mean=False, progress=False),
        seeds=2, n_random=10, n_boot=500,
    )  # fmt: skip
    OUT.mkdir(exist_ok=True)
    fig = report.plot()
    fig.savefig(OUT / "report.png", dpi=110)
    report.save(OUT / "report")
    print(report.summary[["kind", "subroutine", "sub_delta", "abl_delta", "verdict"]])
    print(report.verdict, report.reasons, sep="\n")
    print(f"took {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
