"""Mutation testing of lmforge's core math and data modules: how many small code changes do the tests catch?

mutmut (3.x) rewrites each function of the chosen modules into many mutants (``<`` for ``<=``, ``1`` for
``0``, a dropped argument, ...) and runs, for each mutant, the selected tests that call that function.
A mutant is *killed* when a test fails, *survived* when every test passes (a change no test notices),
*no tests* when no selected test calls the function. mutmut skips decorated functions (the registered
metrics and objectives): only their undecorated helpers are mutated.

mutmut reads its configuration from ``[tool.mutmut]`` in pyproject.toml and writes a ``mutants/`` working
copy beside it, so nothing runs in the checkout: the script copies the repository's files (git's
tracked and untracked-but-not-ignored files) to a scratch folder, appends ``[tool.mutmut]`` to the
copy's pyproject.toml, and runs ``mutmut run`` there (``../shared`` is linked beside the copy, as the
tests expect). It then reads ``mutmut results`` and ``mutmut show NAME`` for every surviving mutant.

    python benchmarks/mutation.py                                   # this checkout, the default modules
    python benchmarks/mutation.py --repo /tmp/mut-after --timeout 840
    python benchmarks/mutation.py --repo /tmp/old --name mutation-before \\
        --modules lmforge/train/objectives.py lmforge/train/least_likely.py ...   # an older layout
    python benchmarks/mutation.py --modules lmforge/losses/common.py --tests tests/test_least_likely.py

Prints a table per module (mutants, killed, survived, timeout/suspicious, no tests, kill rate = killed /
mutants checked), writes ``benchmarks/out/<name>.json`` (counts, every mutant's status, the commit,
the wall-clock time) and ``benchmarks/out/<name>-survivors.txt`` (the diff of each surviving or
untested mutant). ``--timeout`` bounds the ``mutmut run`` wall clock: when it runs out, the mutants
not yet tried count as "not checked" and ``--resume`` with the same ``--work`` folder carries on.

Reading the survivors: mutmut forks every mutant's process from one that has already run the tests, so
a module-level cache filled there (``scoring.metrics._SCORERS``) is filled for every mutant and the lines
that build it never run: a test that wants them must empty the cache first. To try a survivor by hand,
note that ``mutmut apply NAME`` replaces the first method of that name in *any* class of the file
(``PackedStream.val_batches`` for ``ExampleBatches.val_batches``); check the diff it made.
``--report-only`` rebuilds the table and files from a ``--work`` folder without running mutmut.

``tests/test_ddp.py`` is not in the default selection: it trains in subprocesses (torchrun), where
mutmut cannot see which functions a test calls, so it could never be matched to a mutant and would
only cost minutes in mutmut's stats, clean and forced-fail passes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
MARKER = ".lmforge-mutation"  # marks a scratch folder as this script's, so that it may be emptied

MODULES = [
    "lmforge/losses/common.py",
    "lmforge/losses/least_likely.py",
    "lmforge/train/schedule.py",
    "lmforge/data/examples.py",
    "lmforge/data/batches.py",
    "lmforge/train/checkpoint.py",
    "lmforge/scoring/metrics.py",
]

# Test files (globs) that call the modules above in the pytest process; those absent are left out.
TESTS = [
    "tests/test_least_likely.py",
    "tests/test_train_invariants.py",
    "tests/test_finetune.py",
    "tests/test_data_formats.py",
    "tests/test_data_readers.py",
    "tests/test_eval_metrics.py",
    "tests/test_schedule.py",
    "tests/test_checkpoint*.py",
    "tests/test_packing.py",
    "tests/test_chat_data.py",
    "tests/test_chat_finetune.py",
    "tests/test_finetune_task_eval.py",
    "tests/test_mutation_gaps.py",
]

# mutmut's statuses, grouped into the table's columns
KILLED = {"killed", "caught by type check"}
TIMEOUT = {"timeout", "suspicious", "segfault"}  # segfault: mutmut's name for a worker killed by a signal
UNCHECKED = {"not checked", "check was interrupted by user"}
REPORTED = ("survived", "no tests")  # whose diffs go to the survivors file


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    p.add_argument("--modules", nargs="+", default=MODULES, help="files to mutate, relative to --repo")
    p.add_argument(
        "--tests",
        nargs="+",
        default=None,
        help="test files (globs) to select, relative to --repo; default: the relevant ones that exist",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=840,
        help="wall-clock seconds for `mutmut run` (then it is interrupted; --resume continues)",
    )
    p.add_argument(
        "--timeout-multiplier",
        type=float,
        default=15.0,
        help="mutmut's per-mutant limit: CPU seconds of the mutant's tests x this (mutmut's default)",
    )
    p.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel")
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="scratch folder for the copy and mutants/ (default /tmp/lmforge-mutation/<repo>-<commit>)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the scratch folder's earlier results (mutmut retests only unchecked mutants); "
        "without it the scratch copy is made afresh, since mutmut keeps a survivor's verdict "
        "even when new tests would kill it",
    )
    p.add_argument(
        "--report-only", action="store_true", help="no `mutmut run`: report what the --work folder already holds"
    )
    p.add_argument("--name", default="mutation", help="output names: benchmarks/out/<name>.json, <name>-survivors.txt")
    p.add_argument("--by-function", action="store_true", help="also print the counts per function")
    return p.parse_args(argv)


def git(repo: Path, *args: str) -> str | None:
    r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def repo_files(repo: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files (no .venv, no mutants/); the package, tests and
    pyproject.toml where the folder is not a git checkout."""
    out = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"], capture_output=True
    )
    if out.returncode == 0:
        names = [n for n in out.stdout.decode().split("\0") if n]
    else:
        names = [str(f.relative_to(repo)) for d in ("lmforge", "tests") for f in (repo / d).rglob("*") if f.is_file()]
        names.append("pyproject.toml")
    return sorted(
        n for n in names if not n.startswith(("mutants/", ".venv/")) and "__pycache__" not in n and (repo / n).is_file()
    )


def select_tests(repo: Path, patterns: list[str]) -> list[str]:
    found = []
    for pat in patterns:
        for f in sorted(repo.glob(pat)):
            rel = str(f.relative_to(repo))
            if f.is_file() and rel not in found:
                found.append(rel)
    return found


def mutmut_section(modules: list[str], tests: list[str], timeout_multiplier: float) -> str:
    q = lambda xs: "[" + ", ".join(json.dumps(x) for x in xs) + "]"
    packages = sorted({m.split("/")[0] for m in modules})
    return "\n".join(
        [
            "",
            "[tool.mutmut]",
            f"source_paths = {q(packages)}",
            f"only_mutate = {q(modules)}",
            f"pytest_add_cli_args_test_selection = {q(tests)}",
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-W", "ignore::FutureWarning"]',
            f"timeout_multiplier = {timeout_multiplier}",
            'on_dependency_change = "ignore"',
            "",
        ]
    )


def prepare(repo: Path, work: Path, modules: list[str], tests: list[str], args) -> None:
    """The scratch copy: the repository's files, mtimes kept (mutmut compares them), plus [tool.mutmut]."""
    if work.exists() and not args.resume:
        if any(work.iterdir()) and not (work / MARKER).is_file():
            raise SystemExit(f"--work {work} is a folder this script did not make: not emptying it")
        shutil.rmtree(work)
    elif args.resume and not (work / "mutants").is_dir():
        raise SystemExit(f"--resume: {work} holds no earlier mutmut run")
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text(f"scratch copy of {repo} for benchmarks/mutation.py\n")
    for name in repo_files(repo):
        src, dst = repo / name, work / name
        if dst.exists() and dst.stat().st_mtime == src.stat().st_mtime and dst.stat().st_size == src.stat().st_size:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    pyproject = (repo / "pyproject.toml").read_text(encoding="utf-8")
    # a [tool.mutmut] of the repository's own would be read first: drop it, up to the next table
    pyproject = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", pyproject)
    (work / "pyproject.toml").write_text(
        pyproject + mutmut_section(modules, tests, args.timeout_multiplier), encoding="utf-8"
    )
    # the tests find reference data in ../shared/data beside the checkout; mutmut runs them in <work>/mutants
    shared = (repo.parent / "shared").resolve()
    if shared.is_dir() and not (work / "shared").exists():
        (work / "shared").symlink_to(shared)


def mutmut_exe() -> str:
    exe = Path(sys.executable).parent / "mutmut"
    return str(exe) if exe.exists() else (shutil.which("mutmut") or "mutmut")


def run_mutmut(work: Path, args) -> tuple[float, bool, int]:
    """``mutmut run`` in ``work``, bounded by ``args.timeout``: (wall seconds, timed out, exit code)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("MUTANT_UNDER_TEST", None)
    log = work / "mutmut-run.log"
    t0, timed_out = time.time(), False
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [mutmut_exe(), "run", "--max-children", str(args.max_children)],
            cwd=work,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGINT)  # mutmut stops its workers and keeps the verdicts so far
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    wall = time.time() - t0
    if proc.returncode != 0 and not timed_out:
        tail = log.read_text(errors="replace")[-4000:]
        print(f"mutmut run exited with {proc.returncode}; the end of {log}:\n{tail}", file=sys.stderr)
    return wall, timed_out, proc.returncode


def results(work: Path) -> dict[str, str]:
    """Every mutant's status, from ``mutmut results --all true``."""
    out = subprocess.run([mutmut_exe(), "results", "--all", "true"], cwd=work, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"mutmut results failed:\n{out.stderr[-3000:]}")
    statuses = {}
    for line in out.stdout.splitlines():
        m = re.match(r"\s+(\S+__mutmut_\d+): (.+)$", line)
        if m:
            statuses[m.group(1)] = m.group(2).strip()
    return statuses


SHOW = """
import sys
from mutmut.__main__ import show
for name in sys.stdin.read().split():
    try:
        show.callback(name)
    except Exception as e:
        print(f"# {name}: mutmut show failed: {e!r}")
    print("\\0", flush=True)
"""


def show_all(work: Path, names: list[str]) -> list[str]:
    """``mutmut show NAME`` for each name, in one process (a process per mutant costs a second each)."""
    if not names:
        return []
    exe = Path(mutmut_exe()).resolve().parent / "python"
    py = str(exe) if exe.exists() else sys.executable
    out = subprocess.run([py, "-c", SHOW], cwd=work, input="\n".join(names), capture_output=True, text=True)
    diffs = [d.strip() for d in out.stdout.split("\0")][: len(names)]
    if len(diffs) < len(names):
        raise SystemExit(f"mutmut show failed:\n{out.stderr[-3000:]}")
    return diffs


def where(name: str, modules: list[str]) -> tuple[str, str]:
    """(module path, function) of a mutant key such as ``lmforge.data.batches.xǁLayoutǁmine__mutmut_3``."""
    for mod in sorted(modules, key=len, reverse=True):
        dotted = mod[:-3].replace("/", ".")
        if name.startswith(dotted + "."):
            func = name[len(dotted) + 1 :].rsplit("__mutmut_", 1)[0]
            func = func[2:] if func.startswith("x_") else ".".join(p for p in func.split("ǁ")[1:] if p)
            return mod, func
    return "?", name


def tally(names: list[str], statuses: dict[str, str]) -> dict:
    c = Counter(statuses[n] for n in names)
    row = {
        "mutants": len(names),
        "killed": sum(c[s] for s in KILLED),
        "survived": c["survived"],
        "timeout": sum(c[s] for s in TIMEOUT),
        "no_tests": c["no tests"],
        "skipped": c["skipped"],
        "not_checked": sum(c[s] for s in UNCHECKED),
    }
    checked = row["mutants"] - row["not_checked"] - row["skipped"]
    row["kill_rate"] = row["killed"] / checked if checked else None
    return row


def main(argv=None) -> None:
    args = parse_args(argv)
    repo = args.repo.resolve()
    modules = [m.strip("/") for m in args.modules]
    missing = [m for m in modules if not (repo / m).is_file()]
    if missing:
        raise SystemExit(f"not in {repo}: {', '.join(missing)}")
    tests = select_tests(repo, args.tests or TESTS)
    if not tests:
        raise SystemExit(f"no test file of {args.tests or TESTS} exists in {repo}")
    commit = git(repo, "rev-parse", "HEAD")
    dirty = git(repo, "status", "--porcelain", "--", *modules, *tests)
    work = (args.work or Path("/tmp/lmforge-mutation") / f"{repo.name}-{(commit or 'tree')[:9]}").resolve()
    if work == repo or repo in work.parents or work in repo.parents:
        raise SystemExit("--work must lie outside --repo, and not above it")

    print(f"repo {repo} @ {commit or '(not git)'}{' (uncommitted changes in the selection)' if dirty else ''}")
    print(f"work {work}\nmodules {' '.join(modules)}\ntests {' '.join(tests)}")
    runs_file = work / "mutation-runs.json"  # every `mutmut run` on this scratch copy (more than one with --resume)
    if args.report_only:
        if not (work / "mutants").is_dir():
            raise SystemExit(f"--report-only: {work} holds no mutmut run")
    else:
        prepare(repo, work, modules, tests, args)
        wall, timed_out, rc = run_mutmut(work, args)
        print(f"mutmut run: {wall:.0f} s wall clock{' (interrupted at --timeout)' if timed_out else ''}")
        runs = json.loads(runs_file.read_text()) if runs_file.exists() else []
        runs.append(
            {
                "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                "wall_s": round(wall, 1),
                "timed_out": timed_out,
                "exit_code": rc,
            }
        )
        runs_file.write_text(json.dumps(runs, indent=1))
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else []

    statuses = results(work)
    if not statuses:
        raise SystemExit(f"mutmut produced no mutants; see {work / 'mutmut-run.log'}")
    by_module, by_function = defaultdict(list), defaultdict(list)
    for n in statuses:
        mod, func = where(n, modules)
        by_module[mod].append(n)
        by_function[(mod, func)].append(n)
    rows = [{"module": m, **tally(by_module.get(m, []), statuses)} for m in modules]
    rows.append({"module": "total", **tally(list(statuses), statuses)})
    func_rows = [{"module": m, "function": f, **tally(ns, statuses)} for (m, f), ns in sorted(by_function.items())]

    cols = [
        ("module", "module", ""),
        ("mutants", "mutants", "d"),
        ("killed", "killed", "d"),
        ("survived", "survived", "d"),
        ("timeout", "timeout/susp", "d"),
        ("no_tests", "no tests", "d"),
        ("not_checked", "not checked", "d"),
        ("kill", "kill rate", ""),
    ]
    pct = lambda r: {**r, "kill": "-" if r["kill_rate"] is None else f"{100 * r['kill_rate']:.1f}%"}
    print_table([pct(r) for r in rows], cols)
    if args.by_function:
        print()
        print_table([pct(r) for r in func_rows], [("function", "function", "")] + cols)

    OUT.mkdir(parents=True, exist_ok=True)
    survivors = sorted(n for n, s in statuses.items() if s in REPORTED)
    with open(OUT / f"{args.name}-survivors.txt", "w", encoding="utf-8") as f:
        f.write(f"# {len(survivors)} surviving or untested mutants of {repo} @ {commit}\n\n")
        for diff in show_all(work, survivors):
            f.write(diff + "\n\n")
    payload = {
        "repo": str(repo),
        "commit": commit,
        "uncommitted_changes_in_selection": bool(dirty),
        "work": str(work),
        "modules": modules,
        "tests": tests,
        "mutmut": mutmut_version(),
        "max_children": args.max_children,
        "timeout_multiplier": args.timeout_multiplier,
        "wall_s": round(sum(r["wall_s"] for r in runs), 1),
        "runs": runs,
        "complete": not any(s in UNCHECKED for s in statuses.values()),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
        "functions": func_rows,
        "statuses": dict(sorted(statuses.items())),
    }
    (OUT / f"{args.name}.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    print(
        f"wrote {OUT / (args.name + '.json')} and {OUT / (args.name + '-survivors.txt')} "
        f"({len(survivors)} surviving or untested mutants)"
    )


def mutmut_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("mutmut")
    except Exception:
        return None


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """``columns``: (key, header, format spec); text columns left-aligned, numbers right-aligned."""
    cell = lambda r, k, f: format(r[k], f) if isinstance(r.get(k), (int, float)) else str(r.get(k, ""))
    widths = [max(len(h), *(len(cell(r, k, f)) for r in rows)) for k, h, f in columns]
    just = lambda s, w, i: s.ljust(w) if i == 0 else s.rjust(w)
    print("  ".join(just(h, w, i) for i, ((_, h, _), w) in enumerate(zip(columns, widths))))
    for r in rows:
        print("  ".join(just(cell(r, k, f), w, i) for i, ((k, _, f), w) in enumerate(zip(columns, widths))))


if __name__ == "__main__":
    main()
