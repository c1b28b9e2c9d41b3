"""The soak: SIGKILL at random moments of real CLI runs, many times, then `lmforge resume`; a table of what
the kills left and whether each resumed run equals the uninterrupted one (losses and weights, bit for bit).

    python benchmarks/soak.py --kills 100            # spread over pretrain, LoRA, two-stage and RL runs
    python benchmarks/soak.py --kills 8 --kinds pretrain lora

The harness is tests/kills.py (tests/test_kills.py runs two kills of each kind in CI).
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, print_table, write_json  # noqa: E402
from tests.kills import KINDS, base_model, kill_and_resume, reference  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=100)
    p.add_argument("--kinds", nargs="+", default=sorted(KINDS), choices=sorted(KINDS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="soak.json")
    a = p.parse_args(argv)
    rng = random.Random(a.seed)
    outcomes, t0 = [], time.time()
    with tempfile.TemporaryDirectory(prefix="lmforge-soak-") as tmp:
        tmp = Path(tmp)
        base = base_model(tmp / "base")
        refs = {k: reference(KINDS[k], tmp / f"ref-{k}", base) for k in a.kinds}
        for i in range(a.kills):
            kind = a.kinds[i % len(a.kinds)]
            out = kill_and_resume(KINDS[kind], tmp / f"kill-{i}", base, refs[kind], rng)
            outcomes.append(out)
            ok = out.losses_equal and out.weights_equal and not out.problems
            print(f"kill {i + 1}/{a.kills} {kind:8s} at {out.killed_at_s:5.1f}s left {out.left}: {'ok' if ok else out}")
            report(a, outcomes, t0, final=False)
    report(a, outcomes, t0)


def report(a, outcomes: list, t0: float, final: bool = True) -> None:
    """The table by run kind; written after every kill too, so a stopped soak keeps what it measured."""
    rows = []
    for kind in a.kinds:
        mine = [o for o in outcomes if o.kind == kind]
        left = collections.Counter(o.left.split(" step")[0] for o in mine)
        rows.append(
            {
                "run kind": kind,
                "kills": len(mine),
                "left nothing/config": left["nothing"] + left["config only"],
                "left a checkpoint": left["checkpoint"],
                "finished first": left["finished before the kill"],
                "resumed": sum(o.resumed for o in mine),
                "losses equal": sum(o.losses_equal for o in mine),
                "weights equal": sum(o.weights_equal for o in mine),
                "broken latest/best": sum(bool(o.problems) for o in mine),
            }
        )
    if final:
        print_table(rows, [(k, k, "") for k in rows[0]])
        print(f"{len(outcomes)} kills in {(time.time() - t0) / 60:.1f} min")
    write_json(
        a.out,
        {
            "machine": machine(),
            "args": vars(a),
            "minutes": (time.time() - t0) / 60,
            "rows": rows,
            "kills": [asdict(o) for o in outcomes],
        },
    )


if __name__ == "__main__":
    main()
