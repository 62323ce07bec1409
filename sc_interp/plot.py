"""Figures. matplotlib is imported only when a figure is drawn (``pip install 'sc-interp[plot]'``).

Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> fig = compare([(0, 1), (1, 0)], ["a0.h1", "a1.h1"])
    >>> len(fig.axes) >= 1
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from sc_interp._optional import require

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["compare", "report"]

# category -> (label, colour); the order is the colour index drawn
_CATEGORIES = (
    ("not compared", "#ffffff"),
    ("in neither", "#e6e6e6"),
    ("only circuit", "#f28e2b"),
    ("only subnetwork", "#4e79a7"),
    ("both", "#59a14f"),
)


def _grid(sets: Any) -> tuple[list[list[int]], list[list[str]], int, int]:
    """Category index and annotation per (row, layer); rows are heads then one MLP row."""
    from sc_interp.circuits.naming import parse_node

    parsed = [parse_node(n) for n in sets.universe | sets.sub | sets.circuit | sets.outside]
    n_layers = max((p.layer for p in parsed if p.layer is not None), default=-1) + 1
    n_heads = (
        max((p.index for p in parsed if p.kind == "head" and p.index is not None), default=-1) + 1
    )
    grid = [[0] * n_layers for _ in range(n_heads + 1)]
    notes = [[""] * n_layers for _ in range(n_heads + 1)]
    neurons: dict[int, list[int]] = {}
    for name in sets.universe:
        node = parse_node(name)
        if node.kind == "neuron":
            counts = neurons.setdefault(node.layer or 0, [0, 0, 0])  # sub, circuit, both
            counts[0] += name in sets.sub
            counts[1] += name in sets.circuit
            counts[2] += name in sets.sub and name in sets.circuit
            continue
        row = node.index if node.kind == "head" else n_heads
        in_sub, in_circ = name in sets.sub, name in sets.circuit
        grid[row][node.layer] = 4 if in_sub and in_circ else 3 if in_sub else 2 if in_circ else 1  # type: ignore[index]
    for layer, (n_sub, n_circ, n_both) in neurons.items():
        both, only_s, only_c = n_both, n_sub - n_both, n_circ - n_both
        grid[n_heads][layer] = 4 if both else 3 if only_s else 2 if only_c else 1
        notes[n_heads][layer] = f"{n_both}/{n_sub}/{n_circ}"
    return grid, notes, n_layers, n_heads


def compare(
    subnetwork_or_circuit: object,
    circuit: object,
    model: object = None,
    ax: Axes | None = None,
    *,
    aggregation: str = "any",
    n_heads: int | None = None,
) -> Figure:
    """Draw a subnetwork and a reference circuit side by side on a heads x layers grid.

    Each column is a layer, each row a head, the bottom row the layer's MLP. A cell is
    green when both keep the unit, blue when only the subnetwork does, orange when only
    the circuit does, grey when neither, white when it is not compared (see
    :func:`sc_interp.circuits.compare` for what is compared). With neuron-level MLPs the
    MLP cell shows ``both/subnetwork/circuit`` neuron counts.

    Args:
        subnetwork_or_circuit: as for :func:`sc_interp.circuits.compare`.
        circuit: the reference circuit.
        model: optional model (or config) for sizes and validation.
        ax: draw on this Axes; a new figure is made when ``None``.
        aggregation: ``"any"``, ``"majority"`` or ``"all"`` (weight masks).
        n_heads: heads per layer when no ``model`` is given (bridge weight masks).

    Returns:
        The matplotlib Figure.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> fig = compare(["a0.h0", "m1"], ["a0.h0", "a1.h1"])
        >>> fig.axes[0].get_xlabel()
        'layer'
    """
    plt = require("matplotlib.pyplot", "sc.plot.compare")
    colors = require("matplotlib.colors")
    patches = require("matplotlib.patches")
    from sc_interp.circuits.compare import compare as compare_table
    from sc_interp.circuits.compare import node_sets

    sets = node_sets(
        subnetwork_or_circuit, circuit, model, aggregation=aggregation, n_heads=n_heads
    )
    table = compare_table(
        subnetwork_or_circuit, circuit, model, aggregation=aggregation, n_heads=n_heads
    )
    grid, notes, n_layers, n_rows = _grid(sets)
    if ax is None:
        size = (2.6 + 0.55 * max(n_layers, 1), 1.2 + 0.35 * (n_rows + 1))
        fig, axes = plt.subplots(figsize=size, layout="constrained")
    else:
        axes = ax
    # a SubFigure's .figure is its root Figure; a Figure's .figure is itself
    fig = cast("Figure", getattr(axes.figure, "figure", axes.figure))
    cmap = colors.ListedColormap([c for _, c in _CATEGORIES])
    axes.imshow(grid, cmap=cmap, vmin=-0.5, vmax=len(_CATEGORIES) - 0.5, aspect="auto")
    for row, line in enumerate(notes):
        for layer, text in enumerate(line):
            if text:
                axes.text(layer, row, text, ha="center", va="center", fontsize=6)
    axes.set_xticks(range(n_layers))
    axes.set_yticks(range(n_rows + 1))
    axes.set_yticklabels([f"h{h}" for h in range(n_rows)] + ["MLP"])
    axes.set_xlabel("layer")
    axes.set_ylabel("head")
    axes.set_xticks([x - 0.5 for x in range(n_layers + 1)], minor=True)
    axes.set_yticks([y - 0.5 for y in range(n_rows + 2)], minor=True)
    axes.grid(which="minor", color="white", linewidth=1.5)
    axes.tick_params(which="minor", length=0)
    overall = table.iloc[0]
    axes.set_title(
        f"IoU {overall['iou']:.2f}  precision {overall['precision']:.2f}  "
        f"recall {overall['recall']:.2f}  ({aggregation})",
        fontsize=9,
    )
    handles = [
        patches.Patch(facecolor=c, edgecolor="#999999", label=lab) for lab, c in _CATEGORIES[1:]
    ]
    axes.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False
    )
    return fig


def report(rep: Any) -> Any:
    """The paper-style figure of a :class:`~sc_interp.CompositionalityReport` (bars + overlap).

    The same as ``rep.plot()``: for every arm, the accuracy of the subnetwork alone and of
    the model with the subnetwork ablated on the mask's own subroutine and on the other,
    with chance as a dashed line; then the IoU of the two subroutines' masks per site.

    Example:
        >>> report = sc.test_compositionality(model, task_a, task_b)  # doctest: +SKIP
        >>> sc.plot.report(report).savefig("report.png")  # doctest: +SKIP
    """
    return rep.plot()
