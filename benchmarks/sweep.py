"""A sweep over Tiny Shakespeare, then its best settings re-run beside the recipe's defaults at the same steps.

Runs ``lmforge sweep recipes/sweeps/shakespeare.yaml`` (trials shortened to 200 steps; the first is the
recipe's own values) into benchmarks/out/sweep/, writes its report and plots, and trains the recipe and the
sweep's ``best.yaml`` for the same number of steps (the recipe's 950 unless told) with the same seed, to
compare validation nats per character; the recipe's run goes alongside the sweep. Fixed steps, not a time
budget: the figures reproduce on a busy machine. One thread per process (a shared 2-core machine).

    python benchmarks/sweep.py                          # 10 trials, then two 950-step runs
    python benchmarks/sweep.py --trials 6 --final-steps 300
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: threads fighting other work are slower than one

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import OUT, ROOT, machine, print_table, shared_data, timed_pretrain, write_json  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", default=str(ROOT / "recipes" / "sweeps" / "shakespeare.yaml"))
    p.add_argument("--trials", type=int, default=None, help="the sweep's n_trials (default: the file's)")
    p.add_argument("--final-steps", type=int, default=950, help="steps of the side-by-side re-runs")
    p.add_argument("--work", default=str(OUT / "sweep"), help="the sweep's runs and the re-runs (started afresh)")
    p.add_argument("--figures", default="", help="copy the sweep's plots into this folder (e.g. docs/img/sweep)")
    p.add_argument("--out", default="sweep.json", help="file name under benchmarks/out/")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = shared_data("tinyshakespeare.txt")
    spec = yaml.safe_load(Path(args.sweep).read_text(encoding="utf-8"))
    spec["set"] = {
        **spec.get("set", {}),
        "out_dir": str(work / "runs"),
        "log_dir": str(work / "logs"),
        "data.train": str(data),
    }
    if args.trials:
        spec["budget"]["n_trials"] = args.trials
    sweep_file = work / Path(args.sweep).name
    sweep_file.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    info = machine()
    print(f"machine: {info['cores']} cores, torch {info['torch']}, load {info['load_average']}; {sweep_file}")

    config = ROOT / spec["config"]
    common = [f"out_dir={work / 'final'}", f"log_dir={work / 'logs'}", f"data.train={data}"]
    common += ["train.max_time_s=null", f"train.max_steps={args.final_steps}", "train.report_to=none"]
    pool = ThreadPoolExecutor(1)
    defaults = pool.submit(timed_pretrain, ["name=defaults", *common], str(config))

    t0 = time.time()
    lines = []  # the command's own lines (trials, table), without the runs' evaluation lines
    with open(work / "sweep-stderr.txt", "w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lmforge.cli", "sweep", str(sweep_file)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        for line in proc.stdout:
            if not line.startswith(("step ", "tokenizer: ")):
                print(line, end="", flush=True)
                lines.append(line)
        proc.wait()
    sweep_s = time.time() - t0
    (work / "sweep-output.txt").write_text("".join(lines), encoding="utf-8")
    if proc.returncode != 0:
        raise SystemExit(f"lmforge sweep failed: see {work / 'sweep-stderr.txt'}")
    folder = work / "runs" / spec["name"]

    rows = []
    best_run = timed_pretrain(["name=best", *common], str(folder / "best.yaml"))
    for label, r in (("recipe defaults", defaults.result()), ("sweep's best", best_run)):
        ev = r["last_eval"]
        rows.append(
            {
                "run": label,
                "steps": r["run_steps"],
                "run_time_s": r["run_time_s"],
                "val_nats_per_char": ev.get("val_nats_per_char"),
                "val_bpc": ev.get("val_bpc"),
            }
        )
    print()
    print(f"same {args.final_steps} steps, same seed:")
    print_table(
        rows,
        [
            ("run", "run", ""),
            ("steps", "steps", "d"),
            ("run_time_s", "seconds", ".0f"),
            ("val_nats_per_char", "val nats/char", ".4f"),
            ("val_bpc", "val bpc", ".4f"),
        ],
    )
    best = yaml.safe_load((folder / "best.yaml").read_text(encoding="utf-8"))
    if args.figures:
        dest = ROOT / args.figures
        dest.mkdir(parents=True, exist_ok=True)
        for png in sorted((folder / "plots").glob("*.png")):
            shutil.copy(png, dest / png.name)
    path = write_json(
        args.out,
        {
            "machine": {**info, "load_average_end": machine()["load_average"]},
            "sweep_file": spec,
            "sweep_s": sweep_s,
            "sweep_report": (folder / "report.md").read_text(encoding="utf-8"),
            "best_config": best,
            "final": rows,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
