"""Fuzzing at scale: the properties of ``tests/faults`` with ``--scale`` times as many generated cases.

Prints a table of cases per reader (how many were read, how many refused in one line) and every traceback
found (must be none), and writes ``benchmarks/out/fuzz[-TAG].json``. ``--tree DIR`` runs the same
properties against another checkout's ``lmforge`` (e.g. one from before the fixes, from ``git archive``),
to count what the suite finds there.

    python benchmarks/fuzz.py --scale 10 --seed 1
    git archive 2c5e26c~1 | tar -x -C /tmp/before && python benchmarks/fuzz.py --tree /tmp/before --tag before
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULTS = ROOT / "tests" / "faults"
TESTS = [
    "test_fuzz_data.py",
    "test_fuzz_config.py",
    "test_fuzz_tasks.py",
    "test_fuzz_sweep.py",
    "test_fuzz_schema.py",
    "test_fuzz_serve.py",
    "test_fuzz_generate.py",
]


class Failures:
    """A pytest plugin keeping, per test, each distinct exception hypothesis reported (type, message, where)."""

    def __init__(self):
        self.by_test: dict[str, list[str]] = {}

    def pytest_runtest_makereport(self, item, call):
        if call.when != "call" or call.excinfo is None:
            return
        exc = call.excinfo.value
        found = list(exc.exceptions) if isinstance(exc, BaseExceptionGroup) else [exc]
        self.by_test[item.name] = [_describe(e) for e in found]


def _describe(e: BaseException) -> str:
    tb, where = e.__traceback__, "?"
    while tb is not None:  # the innermost frame inside lmforge, else the innermost at all
        name = tb.tb_frame.f_code.co_filename
        if "/lmforge/" in name or where == "?":
            where = f"{Path(name).name}:{tb.tb_lineno}"
        tb = tb.tb_next
    text = (str(e).strip().splitlines() or [""])[0][:120]
    return f"{type(e).__name__} at {where}: {text}"


def worker(scale: float, seed: int, out: Path) -> None:
    """Runs the properties in this process (``lmforge`` from wherever ``PYTHONPATH`` points) and writes JSON."""
    os.environ["LMFORGE_FUZZ_SCALE"] = str(scale)
    sys.path.insert(0, str(FAULTS))
    import pytest

    import lmforge

    plugin = Failures()
    t0 = time.perf_counter()
    args = ["-q", "-p", "no:cacheprovider", "-W", "ignore", f"--hypothesis-seed={seed}", "-o", "addopts="]
    code = pytest.main([*args, *[str(FAULTS / t) for t in TESTS]], plugins=[plugin])
    import fuzzing

    result = {
        "lmforge": str(Path(lmforge.__file__).parent),
        "scale": scale,
        "seed": seed,
        "exit_code": int(code),
        "seconds": round(time.perf_counter() - t0, 1),
        "cases": dict(fuzzing.CASES),
        "refused": dict(fuzzing.REFUSED),
        "tracebacks": plugin.by_test,
    }
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False))


def table(result: dict) -> str:
    rows = ["| reader | cases | read | refused (one line) |", "|---|---:|---:|---:|"]
    for name in sorted(result["cases"]):
        n, refused = result["cases"][name], result["refused"].get(name, 0)
        rows.append(f"| {name} | {n} | {n - refused} | {refused} |")
    total = sum(result["cases"].values())
    rows.append(f"| **all** | **{total}** | | |")
    found = [f"- {test}: {e}" for test, errs in result["tracebacks"].items() for e in errs]
    rows += ["", f"tracebacks (distinct, after shrinking): {len(found)}", *found]
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=10, help="cases per property relative to the test suite's")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tree", help="run against the lmforge package of this checkout instead")
    ap.add_argument("--tag", default="", help="suffix of the JSON file's name")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a.scale, a.seed, Path(a.worker))
    out = ROOT / "benchmarks" / "out" / f"fuzz{'-' + a.tag if a.tag else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if a.tree:  # PYTHONPATH comes before the editable install's path
        env["PYTHONPATH"] = os.pathsep.join([str(Path(a.tree).resolve()), env.get("PYTHONPATH", "")]).rstrip(":")
    cmd = [sys.executable, __file__, "--scale", str(a.scale), "--seed", str(a.seed), "--worker", str(out)]
    subprocess.run(cmd, env=env, cwd=ROOT, check=False)
    result = json.loads(out.read_text())
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    result["date"] = time.strftime("%Y-%m-%d %H:%M")
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(f"\nlmforge from {result['lmforge']}, scale {a.scale}, seed {a.seed}, {result['seconds']} s")
    print(table(result))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
