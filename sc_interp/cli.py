"""The ``sc-interp`` command line: ``demo``, ``train``, ``test``, ``compare``, ``bench``.

Only this module prints; the library returns values and logs.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Structural compositionality for mechanistic interpretability.",
)


TASK_NAMES = ("sva", "anaphora", "inside-contact", "inside-number", "number-contact")


@app.command()
def demo(
    task: str = typer.Option("sva", "--task", help=f"Paper task: one of {', '.join(TASK_NAMES)}."),
    out: str = typer.Option("sc_interp_demo", "--out", help="Directory for the report."),
    quick: bool = typer.Option(False, "--quick", help="Smallest sizes (for CI)."),
    seed: int = typer.Option(0, help="Seed of data, model and masks."),
    arm: str = typer.Option(
        "scratch", help="scratch, or pretrained (language modelling / SimCLR first)."
    ),
) -> None:
    """Train a tiny model on a compound task and test structural compositionality."""
    from sc_interp.demo import run_demo

    if task not in TASK_NAMES:
        raise typer.BadParameter(f"unknown task {task!r}; choose one of {', '.join(TASK_NAMES)}")
    if arm not in ("scratch", "pretrained"):
        raise typer.BadParameter(f"arm must be 'scratch' or 'pretrained', got {arm!r}")
    for item in run_demo(task, out=out, quick=quick, seed=seed, arm=arm):
        if isinstance(item, str):
            typer.echo(item)


@app.command()
def train(
    task_file: str = typer.Argument(
        None, help="Python file defining `model` and `task` (an sc_interp.Subtask)."
    ),
    toy: bool = typer.Option(False, "--toy", help="Use the built-in planted MLP, subtask A."),
    unit: str = typer.Option("neuron", help="weight, neuron or head."),
    targets: list[str] = typer.Option(None, "--target", help="Glob pattern(s) of sites."),
    epochs: int = typer.Option(20),
    lr: float = typer.Option(0.05),
    l0: float = typer.Option(0.1, help="L0 weight on the mean of the training mask."),
    l0_sum: bool = typer.Option(
        False, "--l0-sum", help="Penalise the sum instead (the paper's form; e.g. --l0 1e-8)."
    ),
    seed: int = typer.Option(0),
    out: str = typer.Option("subnetwork.safetensors", help="Where to write the Subnetwork."),
) -> None:
    """Learn a subnetwork for a subtask and write it as a safetensors file."""
    import sc_interp as sc
    from sc_interp._cli_helpers import load_task_file, summary

    if toy == (task_file is not None):
        raise typer.BadParameter("give either a TASK_FILE or --toy")
    if toy:
        from sc_interp.toy import planted_mlp, planted_tasks

        model, task = planted_mlp(), planted_tasks()[0]
    else:
        model, task = load_task_file(task_file)
    cfg = sc.MaskConfig(unit=unit, targets=targets or None)
    train_cfg = sc.TrainConfig(epochs=epochs, lr=lr, l0=l0, l0_mean=not l0_sum, seed=seed)
    sub = sc.train_masks(model, cfg, task, train_cfg)
    path = sub.save(out)
    typer.echo(summary(model, sub, task))
    typer.echo(f"wrote {path}")


@app.command("test")
def test_study(
    study_file: str = typer.Argument(
        ...,
        help="Python file defining `models`, `a` and `b` (optionally `mask`, `train`, `seeds`, "
        "`controls`, `method`, `n_random`, `margin`, `n_boot`).",
    ),
    out: str = typer.Option("sc_interp_report", "--out", help="Directory for the report."),
    seed: int = typer.Option(0, help="Seed of the bootstrap and the random-init copies."),
) -> None:
    """Test structural compositionality of the study's subtasks a and b; write the report."""
    import sc_interp as sc
    from sc_interp._cli_helpers import load_study_file

    models, a, b, options = load_study_file(study_file)
    report = sc.test_compositionality(models, a, b, seed=seed, progress=True, **options)
    typer.echo(repr(report))
    for name, verdict in report.verdict.items():
        typer.echo(f"verdict for {name!r}: {verdict}")
    typer.echo(f"report written to {report.save(out)}")


test_study.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


@app.command()
def compare(
    subnetwork: str = typer.Argument(
        ..., help="Subnetwork/MaskSet .safetensors or a circuit file."
    ),
    circuit: str = typer.Argument(
        ..., help="Circuit file (EAP-IG JSON, auto-circuit, ACDC, head list)."
    ),
    model: str = typer.Option(None, "--model", help="JSON file with the model's TL config."),
) -> None:
    """Compare a learned subnetwork with a circuit: IoU, precision, recall, F1, AUROC."""
    from sc_interp.circuits.cli import compare_command

    table = compare_command(subnetwork, circuit, model)
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


@app.command()
def bench(
    steps: int = typer.Option(20, help="Timed steps per variant."),
    batch: int = typer.Option(32, help="Batch size."),
    memory: bool = typer.Option(False, "--memory", help="Also measure peak memory (Linux)."),
    shapes: str = typer.Option(
        None,
        "--shapes",
        help="Comma-separated model shapes (mlp, cnn, bridge, hooked, gpt2): the step ratios per "
        "shape and batch size instead of the TransformerLens overhead table.",
    ),
    batches: str = typer.Option("8,32,256", help="Comma-separated batch sizes for --shapes."),
    repeats: int = typer.Option(1, help="Runs per shape and batch (--shapes); median ratio."),
    out: str = typer.Option(None, "--out", help="With --shapes: write table.md and table.csv."),
    threads: int = typer.Option(
        0, help="torch threads (0: torch's default; 1 steadies ratios on a loaded machine)."
    ),
) -> None:
    """Time mask training steps against plain forward+backward floors (ratios)."""
    if threads < 0:
        raise typer.BadParameter("--threads must be 0 (torch's default) or positive")
    if threads:
        import torch

        torch.set_num_threads(threads)
    if shapes is None:
        from sc_interp.bench.overhead import overhead_table

        typer.echo(overhead_table(steps=steps, batch=batch, memory=memory))
        return
    from pathlib import Path

    from sc_interp.bench.shapes import shape_rows, to_csv, to_markdown

    try:
        sizes = [int(b) for b in batches.split(",") if b.strip()]
    except ValueError:
        raise typer.BadParameter(f"--batches must be integers, got {batches!r}") from None
    if not sizes or min(sizes) < 1 or steps < 1 or repeats < 1:
        raise typer.BadParameter("--batches, --steps and --repeats must be positive")
    names = [s.strip() for s in shapes.split(",") if s.strip()]
    rows = shape_rows(names, sizes, steps=steps, repeats=repeats, memory=memory)
    table = to_markdown(rows)
    typer.echo(table)
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "table.md").write_text(table + "\n")
        (folder / "table.csv").write_text(to_csv(rows))
        typer.echo(f"wrote {folder / 'table.md'} and {folder / 'table.csv'}")


def main() -> None:
    """Entry point of the ``sc-interp`` console script.

    Errors sc-interp raises on purpose (bad input, a missing optional dependency) are
    printed as one line, without a traceback.
    """
    from sc_interp.errors import ScInterpError

    try:
        app()
    except ScInterpError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
