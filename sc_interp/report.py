"""CompositionalityReport: tables, verdicts, overlap, figures and a self-contained report."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sc_interp import stats
from sc_interp._optional import require
from sc_interp.subnetwork import Subnetwork


@dataclass
class CompositionalityReport:
    """Result of :func:`sc_interp.test_compositionality`.

    Attributes:
        table: one row per base model, arm (``trained``/``random_init``), subroutine and
            seed: accuracies (raw), floored ``sub_delta``/``abl_delta``, density and the
            random-subnetwork control.
        summary: one row per arm and subroutine: means, bootstrap 95% CIs, one-sided
            bootstrap p-values and the verdict.
        verdict: the trained model's verdict per subroutine.
        overlap: IoU of the A and B masks (overall and per site) and across seeds.
        subnetworks: the learned masks keyed by ``(model, arm, subroutine, seed)``.
    """

    table: Any
    summary: Any
    verdict: dict[str, str]
    overlap: Any
    subnetworks: dict[tuple[int, str, str, int], Subnetwork] = field(repr=False)
    margin: float = 0.1

    @classmethod
    def build(
        cls, rows: list[dict[str, Any]], subs: dict, examples: dict, chance: dict[str, float],
        margin: float, n_boot: int, seed: int,
    ) -> CompositionalityReport:  # fmt: skip
        """Compute statistics, verdicts and overlaps from the raw rows."""
        pd = require("pandas")
        table = pd.DataFrame(rows)
        summary_rows = []
        for (kind, sub), group in table.groupby(["kind", "subroutine"], sort=False):
            ch = chance[sub]
            entry: dict[str, Any] = {
                "kind": kind,
                "subroutine": sub,
                "n_models": group["model"].nunique(),
                "n_rows": len(group),
            }
            for col, pos in (("sub_delta", (0, 1)), ("abl_delta", (2, 3))):
                if entry["n_models"] > 1:
                    clusters = {m: g[col].tolist() for m, g in group.groupby("model")}
                    draws = stats.cluster_bootstrap(clusters, n_boot, seed)
                else:
                    pairs = [
                        (
                            examples[(r.model, kind, sub, r.seed)][pos[0]],
                            examples[(r.model, kind, sub, r.seed)][pos[1]],
                        )
                        for r in group.itertuples()
                    ]
                    draws = stats.example_bootstrap(pairs, ch, n_boot, seed)
                lo, hi = stats.bootstrap_ci(draws)
                entry[col] = float(group[col].mean())
                entry[f"{col}_lo"], entry[f"{col}_hi"] = lo, hi
                # one-sided bootstrap p-value in the direction SC predicts
                entry[f"{col}_p"] = float(
                    np.mean(draws <= 0) if col == "sub_delta" else np.mean(draws >= 0)
                )
            beats = group["beats_random"].mean() if "beats_random" in group else float("nan")
            entry["beats_random"] = beats
            entry["solves_target"] = float(group["solves_target"].mean())
            entry["verdict"] = stats.verdict(
                (entry["sub_delta_lo"], entry["sub_delta_hi"]),
                (entry["abl_delta_lo"], entry["abl_delta_hi"]),
                bool(beats > 0.5) if not math.isnan(beats) else False,
                margin,
            )
            summary_rows.append(entry)
        summary = pd.DataFrame(summary_rows)
        verdict = {r["subroutine"]: r["verdict"] for r in summary_rows if r["kind"] == "trained"}
        return cls(table, summary, verdict, _overlap(subs), subs, margin)

    def to_markdown(self) -> str:
        """The report as markdown (tables as pipe tables)."""
        lines = ["# Structural compositionality report", ""]
        lines += ["## Verdicts", ""]
        lines += [f"- **{k}**: {v}" for k, v in self.verdict.items()]
        failed = self.summary[
            (self.summary["kind"] == "trained") & (self.summary["solves_target"] < 1)
        ]
        for row in failed.itertuples():
            lines.append(
                f"- warning: some {row.subroutine} masks do not solve their own subtask "
                f"(solves_target {row.solves_target:.2f}); mask training needs a lower l0 or a higher lr"
            )
        lines += ["", "Rule: compositional when the 95% CI of sub_delta > 0, the CI of abl_delta < 0, and the",
                  "subnetwork beats the size-matched random-subnetwork control; not compositional when both",
                  f"CIs lie within ±{self.margin} or on the wrong side of 0; otherwise inconclusive.", ""]  # fmt: skip
        lines += [
            "## Summary",
            "",
            _markdown(self.summary),
            "",
            "## Runs",
            "",
            _markdown(self.table),
        ]
        lines += ["", "## Mask overlap (IoU)", "", _markdown(self.overlap)]
        return "\n".join(lines) + "\n"

    def plot(self) -> Any:
        """Paper-style bars (subnetwork vs ablated, target vs other, chance line) and overlap."""
        plt = require("matplotlib.pyplot")
        kinds = list(dict.fromkeys(self.table["kind"]))
        subs = list(dict.fromkeys(self.table["subroutine"]))
        fig, axes = plt.subplots(
            1, len(kinds) + 1, figsize=(5 * (len(kinds) + 1), 4), squeeze=False
        )
        for ax, kind in zip(axes[0], kinds, strict=False):
            group = self.table[self.table["kind"] == kind]
            width = 0.2
            for j, (col, label) in enumerate([("sub_target", "subnetwork, +target"), ("sub_other", "subnetwork, +other"),
                                              ("abl_target", "ablated, +target"), ("abl_other", "ablated, +other")]):  # fmt: skip
                means = [group[group["subroutine"] == s][col].mean() for s in subs]
                ax.bar(np.arange(len(subs)) + (j - 1.5) * width, means, width, label=label)
            ax.axhline(_chance(self), color="k", ls="--", lw=1, label="chance")
            ax.set_xticks(range(len(subs)), [f"mask: {s}" for s in subs])
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("accuracy")
            ax.set_title(f"{kind} model")
        axes[0][0].legend(fontsize=7, loc="lower left")
        ax = axes[0][-1]
        per_site = self.overlap[self.overlap["site"] != "(all)"]
        if len(per_site):
            pivot = per_site.pivot_table(index="site", columns="kind", values="iou", aggfunc="mean")
            im = ax.imshow(
                pivot.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis", aspect="auto"
            )
            labels = list(pivot.index)
            common = os.path.commonprefix(labels)  # noqa: RUF071 - character prefix is meant
            common = common[: common.rfind(".") + 1] if len(labels) > 1 else ""
            ax.set_yticks(range(len(labels)), [name[len(common) :] for name in labels], fontsize=6)
            if common:
                ax.set_ylabel(f"site ({common}...)", fontsize=7)
            ax.set_xticks(range(len(pivot.columns)), list(pivot.columns))
            fig.colorbar(im, ax=ax, label="IoU(A mask, B mask)")
        ax.set_title("mask overlap per site")
        fig.tight_layout()
        return fig

    def save(self, directory: str | Path) -> Path:
        """Write report.md, table.csv, summary.csv, overlap.csv and report.png."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(out / "table.csv", index=False)
        self.summary.to_csv(out / "summary.csv", index=False)
        self.overlap.to_csv(out / "overlap.csv", index=False)
        fig = self.plot()
        fig.savefig(out / "report.png", dpi=120)
        require("matplotlib.pyplot").close(fig)
        (out / "report.md").write_text(self.to_markdown() + "\n![report](report.png)\n")
        return out / "report.md"

    def __repr__(self) -> str:
        cols = ["kind", "subroutine", "sub_delta", "sub_delta_lo", "sub_delta_hi", "abl_delta",
                "abl_delta_lo", "abl_delta_hi", "beats_random", "solves_target", "verdict"]  # fmt: skip
        return "CompositionalityReport\n" + self.summary[cols].to_string(
            index=False, float_format="%.3f"
        )


def _chance(report: CompositionalityReport) -> float:
    return float(report.table["chance"].iloc[0]) if "chance" in report.table else 0.25


def _markdown(df: Any) -> str:
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "---|" * len(df.columns)
    body = [
        "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in df.itertuples(index=False)
    ]
    return "\n".join([header, sep, *body])


def _overlap(subs: dict[tuple[int, str, str, int], Subnetwork]) -> Any:
    pd = require("pandas")
    rows = []
    names = sorted({k[2] for k in subs})
    for (model, kind, sub, seed), s in subs.items():
        if sub != names[0] or len(names) < 2:
            continue
        other = subs.get((model, kind, names[1], seed))
        if other is None:
            continue
        rows.append(
            {
                "model": model,
                "kind": kind,
                "seed": seed,
                "pair": f"{names[0]} vs {names[1]}",
                "site": "(all)",
                "iou": stats.iou(s.masks, other.masks),
            }
        )
        for site, value in stats.per_site_iou(s.masks, other.masks).items():
            rows.append(
                {
                    "model": model,
                    "kind": kind,
                    "seed": seed,
                    "pair": f"{names[0]} vs {names[1]}",
                    "site": site,
                    "iou": value,
                }
            )
    for (model, kind, sub, seed), s in subs.items():
        for (m2, k2, s2, seed2), t in subs.items():
            if (m2, k2, s2) == (model, kind, sub) and seed2 > seed:
                rows.append(
                    {
                        "model": model,
                        "kind": kind,
                        "seed": f"{seed}~{seed2}",
                        "pair": f"{sub} across seeds",
                        "site": "(all)",
                        "iou": stats.iou(s.masks, t.masks),
                    }
                )
    return pd.DataFrame(rows, columns=["model", "kind", "seed", "pair", "site", "iou"])
