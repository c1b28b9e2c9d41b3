"""``lmforge resume runs/NAME [key=value ...]``; a sweep's folder (``runs/<sweep>``) resumes the sweep."""

from __future__ import annotations

from pathlib import Path

from lmforge.core.errors import LmforgeError
from lmforge.train.run import resume


def add_arguments(p) -> None:
    p.add_argument("run", help="a run folder, e.g. runs/poet")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=2000")


def run(args) -> int:
    folder = Path(args.run)
    if (folder / "study.db").is_file() and (folder / "sweep.yaml").is_file():
        if args.overrides:
            raise LmforgeError(f"{folder}: a sweep resumes as written; change its settings in {folder / 'sweep.yaml'}")
        from lmforge.sweep.study import run_sweep  # Optuna only for sweeps

        run_sweep(folder / "sweep.yaml")
        print(f"sweep folder: {folder}  (lmforge sweep {folder / 'sweep.yaml'} --report: the summary)")
        return 0
    out = resume(args.run, args.overrides)
    print(f"run folder: {out}")
    return 0
