"""A sweep over a recipe, then its best settings re-run beside the recipe's defaults, same seed, same conditions.

Runs ``lmforge sweep`` on a sweep file (``--workers`` processes on one study, one thread each) into
benchmarks/out/sweep/ (or ``--work``), writes its report and plots, then trains the recipe twice side by side,
one thread each: with its own values, and with the best trial's values of the searched keys (nothing else
differs). The held-out figure is the sweep's metric at each run's best evaluation (what its ``best/`` holds)
and at its last.

Two kinds of sweep file, told apart by their ``set``:
- trials shortened to fixed steps (``train.max_time_s: null``): the re-runs train the recipe's own steps
  (``--final-steps`` to change), with no time budget: the figures reproduce on a busy machine;
- trials at a time budget (``train.max_time_s`` set): settings that change speed are judged at equal time,
  and the re-runs run under the trials' own conditions (the file's ``set``), at the same budget.

    python benchmarks/sweep.py                                        # Tiny Shakespeare, trials of 200 steps
    python benchmarks/sweep.py --sweep recipes/sweeps/alpaca-lora.yaml --base recipes/base-cpu.yaml --workers 2
    python benchmarks/sweep.py --sweep recipes/sweeps/shakespeare-budget.yaml --workers 2   # idle machine only

``--base RECIPE`` pretrains that recipe first (fixed steps) and fine-tunes from it (``model.base``), for the
fine-tuning recipes whose base is an lmforge run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: threads fighting other work are slower than one

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import OUT, ROOT, SHARED, machine, print_table, read_metrics, timed_pretrain, write_json  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", default=str(ROOT / "recipes" / "sweeps" / "shakespeare.yaml"))
    p.add_argument("--trials", type=int, default=None, help="the sweep's n_trials (default: the file's)")
    p.add_argument("--workers", type=int, default=1, help="processes sharing the study, one thread each")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="for every run: trials and re-runs")
    p.add_argument("--final-steps", type=int, default=None, help="fixed-step sweeps: steps of the re-runs")
    p.add_argument("--base", default="", help="a recipe to pretrain first and fine-tune from (model.base)")
    p.add_argument("--work", default=str(OUT / "sweep"), help="the sweep's runs and the re-runs (started afresh)")
    p.add_argument("--figures", default="", help="copy the sweep's plots into this folder (e.g. docs/img/sweep)")
    p.add_argument("--out", default="sweep.json", help="file name under benchmarks/out/")
    return p.parse_args(argv)


def overrides(values: dict) -> list[str]:
    """``key=value`` arguments whose values read back as the same YAML scalars."""
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r} is not key=value")
        out[key] = yaml.safe_load(value)
    return out


def run_workers(files: list[Path], folder: Path, log: Path) -> list[str]:
    """``lmforge sweep`` once per file, all on one study; the first starts alone (it creates the study and
    queues the baseline), the others once its first trial is under way. Returns the commands' own lines."""
    lines, lock, procs = [], threading.Lock(), []

    def pump(i: int, proc: subprocess.Popen) -> None:
        tag = f"[worker {i}] " if len(files) > 1 else ""
        for line in proc.stdout:
            if not line.startswith(("step ", "tokenizer: ")):
                with lock:
                    print(tag + line, end="", flush=True)
                    lines.append(tag + line)

    with open(log, "w", encoding="utf-8") as err:
        threads = []
        for i, f in enumerate(files):
            if i == 1:
                deadline = time.time() + 600
                while not any(folder.glob("trial-*")) and procs[0].poll() is None and time.time() < deadline:
                    time.sleep(1)
            proc = subprocess.Popen(
                [sys.executable, "-m", "lmforge.cli", "sweep", str(f)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
            procs.append(proc)
            threads.append(threading.Thread(target=pump, args=(i, proc)))
            threads[-1].start()
        for t, proc in zip(threads, procs):
            t.join()
            proc.wait()
    if any(p.returncode for p in procs):
        raise SystemExit(f"lmforge sweep failed: see {log}")
    return lines


def held_out(run: dict, metric: str, higher: bool) -> dict:
    """The metric at the run's best evaluation and at its last."""
    rows = read_metrics(Path(run["run_dir"]))
    values = [(r["step"], r[metric]) for r in rows if r.get(metric) is not None and "step" in r]
    if not values:
        raise SystemExit(f"{run['run_dir']}: no evaluation of {metric}")
    best = (max if higher else min)(values, key=lambda sv: sv[1])
    return {"best": best[1], "best_step": best[0], "last": values[-1][1], "last_step": values[-1][0]}


def main(argv=None) -> int:
    args = parse_args(argv)
    args.sweep, args.base = str(Path(args.sweep).resolve()), args.base and str(Path(args.base).resolve())
    os.chdir(ROOT)  # the recipes name their data and bases from the checkout's root
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if not SHARED.is_dir():
        raise SystemExit(f"reference data {SHARED} is absent (it lives in ../shared/data beside the checkout)")
    spec = yaml.safe_load(Path(args.sweep).read_text(encoding="utf-8"))
    recipe = yaml.safe_load((ROOT / spec["config"]).read_text(encoding="utf-8"))
    command = "finetune" if (recipe.get("model") or {}).get("base") else "pretrain"
    everywhere = {"out_dir": str(work / "runs"), "log_dir": str(work / "logs"), "train.report_to": "none"}
    everywhere |= parse_sets(args.set)
    info = machine()
    print(f"machine: {info['cores']} cores, torch {info['torch']}, load {info['load_average']}")

    base_s = None
    if args.base:  # the base a fine-tuning recipe starts from, at its fixed steps
        t0 = time.time()
        base = timed_pretrain(
            [f"out_dir={work / 'base'}", f"log_dir={work / 'logs'}", "train.max_time_s=null", "train.report_to=none"],
            args.base,
        )
        base_s = time.time() - t0
        everywhere["model.base"] = base["run_dir"]
        print(f"base: {base['run_dir']}, {base['run_steps']} steps, val_loss {base['last_eval'].get('val_loss')}")

    spec["set"] = {**spec.get("set", {}), **everywhere}
    if args.trials:
        spec["budget"]["n_trials"] = args.trials
    budget_s = spec["set"].get("train.max_time_s")
    files = []
    for i in range(args.workers):  # a sampler seed per process: with one seed, processes would draw alike
        f = work / (Path(args.sweep).stem + (f".worker{i}" if args.workers > 1 else "") + ".yaml")
        s = {**spec, "seed": spec["seed"] + i} if spec.get("seed") is not None else spec
        f.write_text(yaml.safe_dump(s, sort_keys=False), encoding="utf-8")
        files.append(f)
    folder = work / "runs" / spec["name"]

    t0 = time.time()
    lines = run_workers(files, folder, work / "sweep-stderr.txt")
    sweep_s = time.time() - t0
    report = subprocess.run(
        [sys.executable, "-m", "lmforge.cli", "sweep", str(files[0]), "--report"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if report.returncode:
        raise SystemExit(f"lmforge sweep --report failed:\n{report.stderr[-3000:]}")
    print(report.stdout)
    (work / "sweep-output.txt").write_text("".join(lines) + report.stdout, encoding="utf-8")

    # the re-runs: the recipe, with the best trial's values of the searched keys or its own
    from lmforge.sweep.spec import load_sweep
    from lmforge.sweep.study import open_study

    sweep, _, _ = load_sweep(files[0])
    best = open_study(sweep, folder, create=False).best_trial
    if budget_s:  # the trials' own conditions, budget included
        common = {**spec["set"], "out_dir": str(work / "final")}
    else:
        steps = args.final_steps or (recipe.get("train") or {}).get("max_steps")
        common = {**everywhere, "out_dir": str(work / "final"), "train.max_time_s": None, "train.max_steps": steps}
    arms = {"recipe defaults": {"name": "defaults"}, f"sweep's best (trial {best.number})": {"name": "best"}}
    arms[f"sweep's best (trial {best.number})"] |= best.params
    config = str(ROOT / spec["config"])
    with ThreadPoolExecutor(len(arms)) as pool:  # side by side: both arms see the same machine
        futures = {k: pool.submit(timed_pretrain, overrides(common | v), config, command) for k, v in arms.items()}
        runs = {k: f.result() for k, f in futures.items()}

    higher = sweep.direction == "maximize"
    rows = [
        {"run": k, "steps": r["run_steps"], "run_time_s": r["run_time_s"], **held_out(r, sweep.metric, higher)}
        for k, r in runs.items()
    ]
    epochs = common.get("train.epochs")
    steps = f"{epochs:g} epoch(s)" if epochs else f"{common['train.max_steps']} steps"
    cond = f"{budget_s:g} s each" if budget_s else steps
    print(f"\nside by side, same seed, {cond}, one thread each; {sweep.metric} ({sweep.direction}):")
    print_table(
        rows,
        [
            ("run", "run", ""),
            ("steps", "steps", "d"),
            ("run_time_s", "seconds", ".0f"),
            ("best", f"{sweep.metric} at best", ".4f"),
            ("best_step", "step", "d"),
            ("last", f"{sweep.metric} at end", ".4f"),
        ],
    )
    if args.figures:
        dest = ROOT / args.figures
        dest.mkdir(parents=True, exist_ok=True)
        for png in sorted((folder / "plots").glob("*.png")):
            shutil.copy(png, dest / png.name)
    path = write_json(
        args.out,
        {
            "machine": {**info, "load_average_end": machine()["load_average"]},
            "command": "python benchmarks/sweep.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "sweep_file": spec,
            "workers": args.workers,
            "base_s": base_s,
            "sweep_s": sweep_s,
            "sweep_report": (folder / "report.md").read_text(encoding="utf-8"),
            "best_trial": {"number": best.number, "value": best.value, "params": best.params},
            "final_overrides": common,
            "final": rows,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
