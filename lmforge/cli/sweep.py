"""``lmforge sweep SWEEP.yaml [--report]``: search a config's settings with Optuna; trials are ordinary runs."""

from __future__ import annotations

from lmforge.core.errors import LmforgeError

try:
    import optuna  # noqa: F401
except ImportError:
    raise LmforgeError("lmforge sweep needs Optuna: pip install 'lmforge[sweep]'") from None

from lmforge.sweep.report import write_report  # noqa: E402
from lmforge.sweep.spec import load_sweep  # noqa: E402
from lmforge.sweep.study import open_study, run_sweep, sweep_dir  # noqa: E402


def add_arguments(p) -> None:
    p.add_argument("sweep", help="sweep file: base config, metric, budget, search space (see README)")
    p.add_argument(
        "--report", action="store_true", help="summarise the trials so far (table, best.yaml, plots); run none"
    )


def run(args) -> int:
    if args.report:
        sweep, tree, base = load_sweep(args.sweep)
        folder = sweep_dir(sweep, base)
        study = open_study(sweep, folder, create=False)
    else:
        study = run_sweep(args.sweep)
        sweep, tree, base = load_sweep(args.sweep)
        folder = sweep_dir(sweep, base)
    print(write_report(study, sweep, tree, folder))
    print(f"sweep folder: {folder}  (report: {folder / 'report.md'})")
    return 0
