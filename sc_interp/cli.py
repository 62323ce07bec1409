"""The ``sc-interp`` command line: ``demo``, ``train``, ``compare``, ``bench``.

Only this module prints; the library returns values and logs.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Structural compositionality for mechanistic interpretability.",
)


@app.command()
def demo(
    quick: bool = typer.Option(False, "--quick", help="Smallest sizes (for CI)."),
) -> None:
    """Attach neuron masks to a tiny TransformerLens model, check them, detach."""
    from sc_interp._demo import attach_demo

    for line in attach_demo(quick=quick):
        typer.echo(line)


@app.command()
def bench(
    steps: int = typer.Option(20, help="Timed steps per variant."),
    batch: int = typer.Option(32, help="Batch size."),
) -> None:
    """Time mask training steps against plain forward+backward floors (ratios)."""
    from sc_interp._bench import overhead_table

    typer.echo(overhead_table(steps=steps, batch=batch))


def main() -> None:
    """Entry point of the ``sc-interp`` console script."""
    app()
