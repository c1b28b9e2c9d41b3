"""A sweep's summary: the trials table, the best settings as a ready config, Optuna's plots as PNG files.

Written into the sweep folder: ``report.md`` (the table and the plots), ``best.yaml`` (the base config with
the best trial's values: ``lmforge pretrain runs/<sweep>/best.yaml`` re-runs it), ``plots/*.png``.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

from lmforge.core.config import apply_override
from lmforge.sweep.spec import Sweep


def trial_rows(study: optuna.Study) -> list[dict]:
    """One row per trial: number, state, value, last evaluated step, seconds, settings."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        steps = max(t.intermediate_values) if t.intermediate_values else None
        rows.append(
            {"trial": t.number, "state": t.state.name.lower(), "value": t.value, "step": steps, "seconds": seconds}
            | {"params": dict(t.params)}
        )
    return rows


def table(study: optuna.Study, sweep: Sweep) -> str:
    """The trials as a Markdown table, best first among the complete ones."""
    keys = list(sweep.space)
    order = {TrialState.COMPLETE.name.lower(): 0, "pruned": 1}
    sign = -1 if sweep.direction == "maximize" else 1
    rows = sorted(
        trial_rows(study),
        key=lambda r: (order.get(r["state"], 2), sign * r["value"] if r["value"] is not None else 0, r["trial"]),
    )
    head = ["trial", "state", sweep.metric, "steps", "seconds", *keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [
            str(r["trial"]),
            r["state"],
            _num(r["value"]),
            "" if r["step"] is None else str(r["step"]),
            "" if r["seconds"] is None else f"{r['seconds']:.0f}",
            *(_num(r["params"][k]) if k in r["params"] else "" for k in keys),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_config(study: optuna.Study, sweep: Sweep, tree: dict, out: Path) -> Path | None:
    """The base config (``set`` applied) with the best trial's values: a config file ready to train."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    t = copy.deepcopy(tree)
    for key, value in best.params.items():
        apply_override(t, key, value)
    t["name"] = f"{sweep.name}-best"
    head = (
        f"# The best settings of sweep {sweep.name} (trial {best.number}, {sweep.metric}={best.value:.6g}),\n"
        f"# on {sweep.config}: lmforge {'finetune' if _get(t, 'model.base') else 'pretrain'} {out}\n"
    )
    out.write_text(head + yaml.safe_dump(t, sort_keys=False), encoding="utf-8")
    return out


def plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Optimisation history, parameter importances and slice plots (PNG); those the trials cannot support yet
    (importances need two complete trials) are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    folder.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    wanted = {"history": ovm.plot_optimization_history, "slices": ovm.plot_slice}
    if len(complete) >= 2 and len({tuple(sorted(t.params.items())) for t in complete}) >= 2:
        wanted["importances"] = ovm.plot_param_importances
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        wanted["intermediate"] = ovm.plot_intermediate_values
    written = []
    for name, fn in wanted.items():
        if not complete and name != "intermediate":
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            axes = fn(study)
        flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
        fig = flat[0].figure
        fig.set_size_inches(max(6.4, 3.6 * len(flat) + 1.2), 4.8)  # a slice per searched key, side by side
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def write_report(study: optuna.Study, sweep: Sweep, tree: dict, folder: Path) -> str:
    """Writes report.md, best.yaml and plots/ into the sweep folder; returns the text printed."""
    counts = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    text = [
        f"sweep {sweep.name}: {sum(counts.values())} trials ("
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + f"); {sweep.direction} {sweep.metric}",
        "",
        table(study, sweep),
    ]
    best = best_config(study, sweep, tree, folder / "best.yaml")
    if best is not None:
        b = study.best_trial
        text += [
            "",
            f"best: trial {b.number}, {sweep.metric}={b.value:.6g}: "
            + " ".join(f"{k}={_num(v)}" for k, v in b.params.items()),
            f"best settings: {best}; best model: {folder / 'best'}",
        ]
    images = plots(study, folder / "plots")
    if images:
        text += ["", "plots: " + ", ".join(str(p) for p in images)]
    md = "\n".join(text) + "\n" + "".join(f"\n![{p.stem}](plots/{p.name})\n" for p in images)
    (folder / "report.md").write_text(md, encoding="utf-8")
    return "\n".join(text)


def _num(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _get(tree: dict, dotted: str):
    node = tree
    for k in dotted.split("."):
        node = node.get(k) if isinstance(node, dict) else None
    return node
