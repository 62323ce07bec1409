"""CompositionalityReport: tables, verdicts, overlap, figures and a self-contained report."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sc_interp import stats
from sc_interp._optional import require
from sc_interp.subnetwork import Subnetwork
from sc_interp.verdict import Evidence, decide, rule_text


@dataclass
class CompositionalityReport:
    """Result of :func:`sc_interp.test_compositionality`.

    Attributes:
        table: one row per base model, arm (``trained``/``random_init``), subroutine and
            seed: accuracies (raw), floored ``sub_delta``/``abl_delta``, density,
            ``solves_target`` with the split it was judged on (``solves_on``) and the full
            model's and the subnetwork's accuracies there (``full_judged``, ``sub_judged``),
            and the random-subnetwork control.
        summary: one row per arm and subroutine: means, 95% CIs, one-sided p-values, the
            pooled random-subnetwork comparison, the contrast with the untrained control,
            the interval method, the verdict and its reason.
        verdict: the trained model's verdict per subroutine.
        reasons: the reason for each verdict, in words.
        overlap: IoU of the A and B masks (overall and per site) and across seeds.
        subnetworks: the learned masks keyed by ``(model, arm, subroutine, seed)``.
        margin: the effect-size margin of the verdict rule.
        controlled: whether the random-init control was run (else the verdict is
            uncontrolled).
        init_method: how the random-init copies were drawn.
        data: which data each number comes from: one row per subtask and split (``train``:
            mask training; ``val``: ``solves_target``; ``test``: the accuracies and deltas),
            with the split's description (:meth:`sc_interp.Subtask.describe`).

    Example:
        >>> report = sc.test_compositionality(model, task_a, task_b)  # doctest: +SKIP
        >>> report.verdict, report.reasons["A"]  # doctest: +SKIP
        >>> report.summary[["kind", "subroutine", "sub_delta", "abl_delta", "verdict"]]  # doctest: +SKIP
        >>> fig = report.plot()  # doctest: +SKIP
        >>> report.save("report/")  # report.md, report.png, CSV tables  # doctest: +SKIP
    """

    table: Any
    summary: Any
    verdict: dict[str, str]
    overlap: Any
    subnetworks: dict[tuple[int, str, str, int], Subnetwork] = field(repr=False)
    margin: float = 0.1
    reasons: dict[str, str] = field(default_factory=dict)
    controlled: bool = False
    init_method: str | None = None
    data: Any = None

    @classmethod
    def build(
        cls, rows: list[dict[str, Any]], subs: dict, examples: dict, random: dict,
        margin: float = 0.1, n_boot: int = 2000, seed: int = 0, init_method: str | None = None,
        data: list[dict[str, Any]] | None = None,
    ) -> CompositionalityReport:  # fmt: skip
        """Compute intervals, verdicts and overlaps from the raw rows.

        Args:
            rows: one dict per (model, arm, subroutine, seed), as in :attr:`table`.
            subs: the learned Subnetworks under the same keys.
            examples: per key, per-example scores ``{"sub_t", "sub_o", "abl_t", "abl_o"}``.
            random: per key, the random subnetworks' selective effects (if that control ran).
            data: per subtask and split, what it is used for and where it comes from.
        """
        pd = require("pandas")
        table = pd.DataFrame(rows)
        kinds = set(table["kind"])
        summary_rows = []
        for (kind, sub), group in table.groupby(["kind", "subroutine"], sort=False):
            keys = [(r.model, kind, sub, r.seed) for r in group.itertuples()]
            first = group.iloc[0]
            chances = (float(first["chance_target"]), float(first["chance_other"]))
            sub_ci = stats.interval(
                _arms(group, kind, examples, "sub", chances), True, n_boot, seed
            )
            abl_ci = stats.interval(
                _arms(group, kind, examples, "abl", chances), False, n_boot, seed
            )
            control = None
            if kind == "trained" and "random_init" in kinds:
                control = stats.interval(
                    _contrast(table, group, sub, examples, chances), False, n_boot, seed
                )
            draws = [random[k] for k in keys if k in random]
            effect = float(group["selective_effect"].mean())
            p95 = float(np.quantile(np.concatenate(draws), 0.95)) if draws else None
            evidence = Evidence(
                sub_ci, abl_ci, len(group), int(group["solves_target"].sum()),
                effect if draws else None, p95, control, is_control=kind != "trained",
            )  # fmt: skip
            verdict, reason = decide(evidence, margin)
            entry: dict[str, Any] = {"kind": kind, "subroutine": sub,
                                     "n_models": group["model"].nunique(), "n_masks": len(group)}  # fmt: skip
            for name, ci in (
                ("sub_delta", sub_ci),
                ("abl_delta", abl_ci),
                ("control_abl_diff", control),
            ):
                if ci is not None:
                    entry.update({name: ci.estimate, f"{name}_lo": ci.lo, f"{name}_hi": ci.hi,
                                  f"{name}_p": ci.p})  # fmt: skip
            entry.update(
                selective_effect=effect,
                random_effect_p95=p95 if p95 is not None else float("nan"),
                beats_random=(effect > p95) if p95 is not None else float("nan"),
                solves_target=f"{evidence.n_solving}/{evidence.n_masks}",
                interval=sub_ci.method, verdict=verdict, reason=reason,
            )  # fmt: skip
            summary_rows.append(entry)
        summary = pd.DataFrame(summary_rows)
        trained = [r for r in summary_rows if r["kind"] == "trained"]
        return cls(
            table, summary, {r["subroutine"]: r["verdict"] for r in trained}, _overlap(subs),
            subs, margin, {r["subroutine"]: r["reason"] for r in trained},
            "random_init" in kinds, init_method, pd.DataFrame(data) if data else None,
        )  # fmt: skip

    def warnings(self) -> list[str]:
        """What a reader must not miss: failed masks, a control that shows the signature."""
        out = []
        s = self.summary
        for row in s[s["kind"] == "trained"].itertuples():
            solved, total = map(int, str(row.solves_target).split("/"))
            if solved < total:
                out.append(
                    f"{total - solved} of {total} {row.subroutine} masks do not solve their own "
                    "subtask (mask training needs a lower l0 or a higher lr)"
                )
        trained = self.table[self.table["kind"] == "trained"]
        if "full_judged" in trained:
            for sub, rows in trained.groupby("subroutine", sort=False):
                full, chance = rows["full_judged"].mean(), rows["chance_target"].mean()
                if full < chance + 0.05:
                    out.append(
                        f"the full model is near chance ({full:.2f}) on the {sub} data that "
                        f"solves_target is judged on ({rows['solves_on'].iloc[0]} split), so that "
                        "check, relative to the full model, is easy to pass; the subnetworks "
                        f"themselves score {rows['sub_judged'].mean():.2f} there"
                    )
        for row in s[s["kind"] == "random_init"].itertuples():
            if row.verdict == "compositional":
                out.append(
                    f"the untrained (random-init) control shows the signature for {row.subroutine} "
                    "on its own; only a trained abl_delta clearly below the control's counts"
                )
        if not self.controlled:
            out.append("uncontrolled: the random-init control was not run")
        return out

    def to_markdown(self) -> str:
        """The report as markdown (tables as pipe tables)."""
        lines = ["# Structural compositionality report", "", "## Verdicts", ""]
        lines += [f"- **{k}**: {v}: {self.reasons.get(k, '')}" for k, v in self.verdict.items()]
        controls = self.summary[self.summary["kind"] != "trained"]
        lines += [
            f"- {row.kind} control, {row.subroutine}: {row.verdict}: {row.reason}"
            for row in controls.itertuples()
        ]
        lines += [f"- warning: {w}" for w in self.warnings()]
        lines += ["", "## The rule", "", rule_text(self.margin), ""]
        methods = sorted(set(self.summary["interval"]))
        lines += [f"Intervals: {'; '.join(methods)}."]
        if self.init_method:
            lines += ["", f"Random-init control drawn by: {self.init_method}."]
        lines += self._data_lines()
        shown = self.summary.drop(columns=["interval", "reason"])  # both stated above
        lines += ["", "## Summary", "", _markdown(shown), "", "## Runs", "",
                  _markdown(self.table), "", "## Mask overlap (IoU)", "", _markdown(self.overlap)]  # fmt: skip
        return "\n".join(lines) + "\n"

    def _data_lines(self) -> list[str]:
        """The "Data" section: what each mask was trained on and where it was scored."""
        if self.data is None or not len(self.data):
            return []
        d = self.data
        src = {(r.subtask, r.split): r.source for r in d.itertuples()}
        names = list(dict.fromkeys(d["subtask"]))
        lines = ["", "## Data", ""]
        for name in names:
            parts = [f"mask trained on: {src[(name, 'train')]}"]
            if (name, "val") in src:
                parts.append(f"solves_target judged on: {src[(name, 'val')]}")
            scored = "; ".join(f"{n}: {src[(n, 'test')]}" for n in names if (n, "test") in src)
            parts.append(f"scored on: {scored}")
            lines.append(f"- **{name}**: " + "; ".join(parts))
        return [*lines, "", _markdown(d)]

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
        """Write report.md, table.csv, summary.csv, overlap.csv, data.csv and report.png."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(out / "table.csv", index=False)
        if self.data is not None:
            self.data.to_csv(out / "data.csv", index=False)
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
        lines = [
            "CompositionalityReport",
            self.summary[cols].to_string(index=False, float_format="%.3f"),
        ]
        lines += [f"{k}: {v} ({self.reasons.get(k, '')})" for k, v in self.verdict.items()]
        lines += [f"warning: {w}" for w in self.warnings()]
        return "\n".join(lines)


def _chance(report: CompositionalityReport) -> float:
    return float(report.table["chance_target"].mean())


def _arms(
    group: Any, kind: str, examples: dict, measure: str, chances: tuple[float, float],
    weight: float = 1.0,
) -> dict[int, list[stats.Arm]]:  # fmt: skip
    """Per base model, one Arm stacking the seeds' per-example scores of ``measure``."""
    out: dict[int, list[stats.Arm]] = {}
    for model, rows in group.groupby("model", sort=False):
        scores = [examples[(model, kind, r.subroutine, r.seed)] for r in rows.itertuples()]
        out[int(model)] = [
            stats.Arm(
                np.stack([s[f"{measure}_t"] for s in scores]),
                np.stack([s[f"{measure}_o"] for s in scores]),
                *chances,
                weight,
            )
        ]
    return out


def _contrast(
    table: Any, trained: Any, sub: str, examples: dict, chances: tuple[float, float]
) -> dict[int, list[stats.Arm]]:
    """Trained minus random-init ``abl_delta`` arms, per base model (same test sets)."""
    control = table[(table["kind"] == "random_init") & (table["subroutine"] == sub)]
    mine = _arms(trained, "trained", examples, "abl", chances)
    theirs = _arms(control, "random_init", examples, "abl", chances, weight=-1.0)
    return {m: mine[m] + theirs[m] for m in mine if m in theirs}


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
