"""Gradient checkpointing at context 2048: peak memory (CPU RSS, or GPU memory where CUDA is) and step time,
side by side in one run, beside the estimate lmforge prints at start.

A base (preset 10m at context 2048) is pretrained for one step on ../shared/data/tinyshakespeare.txt, then
fine-tuned on the same text in 2048-token blocks, once plainly and once with train.gradient_checkpointing,
each in a fresh process that reports its own peak.

    python benchmarks/memory.py                      # full fine-tune, batch 4, 4 steps per arm
    python benchmarks/memory.py --lora --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import OUT, machine, read_metrics, shared_data  # noqa: E402

# Runs the CLI in this process, then prints the process's own peak resident memory (and CUDA's), as JSON.
CHILD = """
import json, resource, sys, torch
from lmforge.cli import main
code = main(sys.argv[1:])
peak = {"rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
if torch.cuda.is_available():
    peak["cuda_bytes"] = torch.cuda.max_memory_allocated()
print("PEAK " + json.dumps(peak))
sys.exit(code)
"""


def run(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"lmforge {args[0]} failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("PEAK "))
    return json.loads(line[5:])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--preset", default="10m")
    p.add_argument("--lora", action="store_true", help="LoRA r=16 instead of a full fine-tune")
    p.add_argument("--out", default="memory.json")
    a = p.parse_args(argv)
    text = shared_data("tinyshakespeare.txt")
    rows = []
    with tempfile.TemporaryDirectory(prefix="lmforge-mem-") as tmp:
        cfg = Path(tmp) / "c.yaml"
        cfg.write_text("name: base\n")
        common = [
            f"out_dir={tmp}",
            f"log_dir={tmp}/logs",
            "train.report_to=none",
            "train.eval_every=1000",
            "train.save_every=1000",
            "sample.max_new_tokens=1",
            "train.warmup_steps=0",
        ]
        run(
            [
                "pretrain",
                str(cfg),
                f"data.train={text}",
                f"model.preset={a.preset}",
                f"model.context={a.context}",
                "tokenizer.vocab_size=256",
                "train.max_steps=1",
                "train.batch_size=1",
                *common,
            ]
        )
        for arm in ("plain", "gradient checkpointing"):
            name = "ckpt" if arm != "plain" else "plain"
            over = [
                f"name={name}",
                f"model.base={tmp}/base/model",
                f"data.train={text}",
                "data.format=text",
                f"model.context={a.context}",
                f"train.batch_size={a.batch_size}",
                f"train.max_steps={a.steps}",
                "train.log_every=1",
                f"train.gradient_checkpointing={arm != 'plain'}",
                *common,
            ]
            if a.lora:
                over += ["lora.method=lora", "lora.r=16"]
            peak = run(["finetune", str(cfg), *over])
            derived = json.loads((Path(tmp) / name / "derived.json").read_text())
            steps = [r for r in read_metrics(Path(tmp) / name) if "loss" in r]
            rows.append(
                {
                    "arm": arm,
                    **peak,
                    "estimate_bytes": derived["memory"]["total"],
                    "tokens_per_s": sum(r["tokens_per_s"] for r in steps[1:]) / max(len(steps) - 1, 1),
                    "precision": derived["precision"],
                    "params": derived["params"],
                }
            )
    base = rows[0]
    key = "cuda_bytes" if "cuda_bytes" in base else "rss_bytes"
    print(
        f"context {a.context}, batch {a.batch_size}, preset {a.preset}{' + LoRA' if a.lora else ''}, "
        f"{a.steps} steps; peak = {'GPU memory' if key == 'cuda_bytes' else 'process RSS'}"
    )
    print("| arm | peak GiB | estimate GiB | tokens/s | peak vs plain | step time vs plain |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['arm']} | {r[key] / 2**30:.2f} | {r['estimate_bytes'] / 2**30:.2f} | {r['tokens_per_s']:,.0f} | "
            f"{r[key] / base[key] - 1:+.0%} | {base['tokens_per_s'] / r['tokens_per_s'] - 1:+.0%} |"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / a.out).write_text(json.dumps({"machine": machine(), "args": vars(a), "rows": rows}, indent=1))
    print(f"wrote {OUT / a.out}")


if __name__ == "__main__":
    main()
