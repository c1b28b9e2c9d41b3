"""LoRA fine-tuning speed: lmforge's loop against a plain Hugging Face ``Trainer`` + PEFT, side by side.

Both arms fine-tune the same saved base (a preset Llama with a BPE trained on the Alpaca rows) with
the same LoRA (rank, alpha, every linear layer), on the same tokenized Alpaca examples (lmforge's data
path: completion-only labels, EOS), the same batch size, learning rate and steps. Each arm runs in its
own subprocess, so peak memory (RSS high-water mark) is its own; arms alternate and repeat, because
other work on the machine skews single timings. Throughput is real (non-PAD) tokens over the wall-clock
of the steps after a warm-up, measured between step starts, so loading, saving and evaluation are out.

    python benchmarks/finetune_speed.py --threads 1           # 3m preset, 3 rounds, the four arms below
    python benchmarks/finetune_speed.py --preset 10m --rounds 5 --arms hf:fp32 lmforge:auto

An lmforge arm may name how batches are made, as a third part: ``lmforge:bf16:grouped`` (the default:
length-grouped padded batches), ``lmforge:bf16:random`` (padded batches in random order, as most trainers
default to) or ``lmforge:bf16:packed`` (data.packing: examples end to end in rows of the context):

    python benchmarks/finetune_speed.py --context 512 \
        --arms lmforge:bf16:random lmforge:bf16:grouped lmforge:bf16:packed
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, print_table, shared_data, write_json  # noqa: E402

# framework:precision. Defaults as users run them: HF Trainer computes in fp32 unless told (bf16=False);
# lmforge's precision=auto picks bf16 where the CPU has native bf16 matmuls (AVX-512 BF16 / AMX).
ARMS = ("hf:fp32", "lmforge:fp32", "lmforge:auto", "hf:bf16")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="3m")
    p.add_argument("--context", type=int, default=256, help="examples are cut to this many tokens")
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=16, help="timed steps after the warm-up")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--arms", nargs="+", default=list(ARMS), help="framework:precision pairs (fp32, bf16, auto)")
    p.add_argument("--rounds", type=int, default=3, help="each round runs both arms, in alternating order")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS of both arms (default: torch's); 1 is steadier on a busy machine",
    )
    p.add_argument(
        "--hf-grouped",
        action="store_true",
        help="give the HF arm lmforge's length-grouped batches (compares the loops alone)",
    )
    p.add_argument("--out", default="finetune_speed.json", help="file name under benchmarks/out/")
    p.add_argument("--arm", choices=["hf", "lmforge"], help=argparse.SUPPRESS)  # internal: run one arm
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="grouped", help=argparse.SUPPRESS)
    p.add_argument("--base", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---- shared set-up ------------------------------------------------------------------------------


def make_base(args, out: Path) -> Path:
    """A preset Llama and a BPE trained on the Alpaca rows, saved as a folder (as a hub model would be)."""
    from lmforge.core.config import ModelConfig
    from lmforge.data.readers import read_rows
    from lmforge.model import build_model
    from lmforge.model.tokenizer import train_tokenizer

    rows = read_rows(shared_data("alpaca_gpt4_1k.json"))
    texts = [" ".join(str(v) for v in r.values()) for r in rows]
    tok = train_tokenizer(texts, args.vocab, model_max_length=args.context)
    model = build_model(ModelConfig(preset=args.preset, context=args.context), tok, seed=0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def run_config(args, work: Path):
    from lmforge.core.config import load_config

    over = {
        "name": "speed",
        "out_dir": work / "runs",
        "log_dir": work / "logs",
        "model.base": args.base,
        "model.context": args.context,
        "lora.method": "lora",
        "lora.r": args.rank,
        "lora.alpha": 2 * args.rank,
        "data.train": shared_data("alpaca_gpt4_1k.json"),
        "data.format": "alpaca",
        "data.val_fraction": 0,
        "train.precision": args.precision,
        "train.batch_size": args.batch,
        "train.lr": 1e-3,
        "train.warmup_steps": 2,
        "train.max_steps": args.warmup + args.steps + 1,
        "train.weight_decay": 0.0,
        "train.eval_every": 10**6,
        "train.save_every": 10**6,
        "train.log_every": 10,
        "sample.every": 10**6,
        "data.group_by_length": args.variant == "grouped",
        "data.packing": args.variant == "packed",
    }
    return load_config(None, [f"{k}={v}" for k, v in over.items()])


class StepClock:
    """Start time of every step and the real tokens of each step's batch: throughput between step starts."""

    def __init__(self):
        self.starts: list[float] = []
        self.tokens: list[int] = []

    def tokens_per_s(self, warmup: int) -> tuple[float, float]:
        """Tokens of steps warmup..n-2 over the time from step warmup's start to step n-1's start."""
        last = len(self.starts) - 1
        seconds = self.starts[last] - self.starts[warmup]
        return sum(self.tokens[warmup:last]) / seconds, seconds


# ---- the two arms (each in its own process; both see the same batches in the same order) ----


def arm_lmforge(args, work: Path) -> dict:
    from lmforge.train.finetune import load_base, stage_data
    from lmforge.train.loop import _real_tokens, train
    from lmforge.train.run import make_accelerator

    cfg = run_config(args, work)
    accelerator = make_accelerator(cfg)
    tokenizer, model = load_base(cfg)
    data, clock = stage_data(cfg, cfg.data, tokenizer, args.context, accelerator), StepClock()
    inner = data.train_step

    def timed_step(step):  # the loop asks for each step's batches first: a step start
        clock.starts.append(time.perf_counter())
        batches = inner(step)
        clock.tokens.append(sum(_real_tokens(b) for b in batches))  # padding is not throughput
        return batches

    data.train_step = timed_step
    result = train(cfg, model, tokenizer, data, accelerator=accelerator)
    return {"clock": clock, "mean_loss": sum(result.losses) / len(result.losses)}


def lmforge_order(examples: list[dict], batch: int, steps: int, seed: int, grouped: bool = False) -> list[dict]:
    """The rows in lmforge's shuffled order, step after step. The HF arm reads them ungrouped by default:
    a plain random order, as its default sampler gives (``--hf-grouped``: lmforge's length-grouped batches)."""
    from lmforge.data.batches import ExampleBatches, Layout

    data = ExampleBatches(examples, [], Layout(batch, 1), seed, pad_id=0, group_by_length=grouped)
    n = len(examples)
    return [examples[data._perm(i // n)[i % n]] for i in range(steps * batch)]


def arm_hf(args, work: Path) -> dict:
    import datasets
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from lmforge.data.examples import load_examples
    from lmforge.train.run import pick_precision

    cfg = run_config(args, work)
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    train_ex, _ = load_examples(cfg.data, tokenizer, args.context, cfg.seed)  # the same token ids and labels
    rows = lmforge_order(train_ex, args.batch, cfg.train.max_steps, cfg.seed, args.hf_grouped)
    ds = datasets.Dataset.from_dict({k: [e[k] for e in rows] for k in ("input_ids", "labels")})
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_pretrained(args.base)
    model = get_peft_model(
        model,
        LoraConfig(
            r=args.rank, lora_alpha=2 * args.rank, target_modules="all-linear", lora_dropout=0.0, task_type="CAUSAL_LM"
        ),
    )
    clock, collate = StepClock(), DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)

    def counted(features):  # one call per step (no accumulation, no workers)
        batch = collate(features)
        clock.tokens.append(int(batch["attention_mask"].sum()))
        return batch

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            clock.starts.append(time.perf_counter())

    targs = TrainingArguments(
        output_dir=str(work / "hf"),
        per_device_train_batch_size=args.batch,
        max_steps=cfg.train.max_steps,
        learning_rate=cfg.train.lr,
        warmup_steps=2,
        lr_scheduler_type="cosine",
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=10,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=pick_precision(args.precision) == "bf16",
        seed=cfg.seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        train_sampling_strategy="sequential",
    )
    trainer = Trainer(model=model, args=targs, train_dataset=ds, data_collator=counted, callbacks=[Clock()])
    out = trainer.train()
    return {"clock": clock, "mean_loss": out.training_loss}  # the mean over the run


def run_arm(args) -> None:
    """Runs one arm in this process and prints one JSON line: tokens/s and the RSS high-water mark."""
    work = Path(tempfile.mkdtemp(prefix=f"ft-speed-{args.arm}-"))
    res = (arm_hf if args.arm == "hf" else arm_lmforge)(args, work)
    tok_s, seconds = res["clock"].tokens_per_s(args.warmup)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    from lmforge.train.run import pick_precision

    arm = f"{args.arm}:{args.precision}" + (
        f":{args.variant}" if args.arm == "lmforge" and args.variant != "grouped" else ""
    )
    print(
        "RESULT "
        + json.dumps(
            {
                "arm": arm,
                "computes_in": pick_precision(args.precision),
                "tokens_per_s": tok_s,
                "timed_s": seconds,
                "timed_steps": len(res["clock"].starts) - 1 - args.warmup,
                "peak_rss_mib": peak_mib,
                "mean_loss": res["mean_loss"],
            }
        )
    )


# ---- the driver ---------------------------------------------------------------------------------


def child(args, arm: str) -> dict:
    parts = arm.split(":")
    framework, precision, variant = parts[0], (parts[1:2] or ["fp32"])[0], (parts[2:3] or ["grouped"])[0]
    cmd = (
        [
            sys.executable,
            __file__,
            "--arm",
            framework,
            "--precision",
            precision,
            "--variant",
            variant,
            "--base",
            args.base,
        ]
        + [f"--{k}={getattr(args, k)}" for k in ("preset", "context", "vocab", "batch", "steps", "warmup", "rank")]
        + (["--hf-grouped"] if args.hf_grouped else [])
    )
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"arm {arm} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def summarize(runs: list[dict], arms: list[str]) -> list[dict]:
    rows = []
    for arm in arms:
        mine = [r for r in runs if r["arm"] == arm]
        tps = [r["tokens_per_s"] for r in mine]
        rows.append(
            {
                "arm": arm,
                "computes_in": mine[0]["computes_in"],
                "median_tok_s": statistics.median(tps),
                "min_tok_s": min(tps),
                "max_tok_s": max(tps),
                "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in mine),
                "mean_loss": statistics.median(r["mean_loss"] for r in mine),
            }
        )
    return rows


def compare(rows: list[dict]) -> dict:
    """lmforge against HF at the same precision, and both at their defaults (lmforge:auto vs hf:fp32)."""
    by = {r["arm"]: r for r in rows}
    pairs = {
        "defaults": ("lmforge:auto", "hf:fp32"),
        "fp32": ("lmforge:fp32", "hf:fp32"),
        "bf16": ("lmforge:bf16", "hf:bf16"),
        "auto_vs_hf_bf16": ("lmforge:auto", "hf:bf16"),
    }
    for prec in ("fp32", "bf16", "auto"):  # packing against padded random batches and length-grouped ones
        pairs[f"packed_vs_random_{prec}"] = (f"lmforge:{prec}:packed", f"lmforge:{prec}:random")
        pairs[f"packed_vs_grouped_{prec}"] = (f"lmforge:{prec}:packed", f"lmforge:{prec}")
        pairs[f"packed_vs_hf_{prec}"] = (f"lmforge:{prec}:packed", f"hf:{prec}")
    out = {}
    for name, (ours, theirs) in pairs.items():
        if ours in by and theirs in by:
            a, b = by[ours], by[theirs]
            out[name] = {
                "throughput_x": a["median_tok_s"] / b["median_tok_s"],
                "peak_rss_mib_diff": a["peak_rss_mib"] - b["peak_rss_mib"],
            }
            print(
                f"{ours} / {theirs}: {out[name]['throughput_x']:.2f}x throughput, "
                f"{out[name]['peak_rss_mib_diff']:+.0f} MiB peak RSS"
            )
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.arm:
        run_arm(args)
        return 0
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, load {info['load_average']}")
    info["torch_threads"] = args.threads or info["torch_threads"]
    runs = []
    with tempfile.TemporaryDirectory(prefix="lmforge-ft-speed-") as tmp:
        args.base = str(make_base(args, Path(tmp) / "base"))
        for i in range(args.rounds):
            for arm in args.arms if i % 2 == 0 else args.arms[::-1]:  # alternate who goes first
                r = child(args, arm)
                runs.append({"round": i + 1, **r})
                print(f"round {i + 1} {arm:13s} {r['tokens_per_s']:8.0f} tok/s  peak RSS {r['peak_rss_mib']:.0f} MiB")
    rows = summarize(runs, args.arms)
    print_table(
        rows,
        [
            ("arm", "arm", ""),
            ("computes_in", "computes in", ""),
            ("median_tok_s", "tok/s (median)", ".0f"),
            ("min_tok_s", "min", ".0f"),
            ("max_tok_s", "max", ".0f"),
            ("peak_rss_mib", "peak RSS MiB", ".0f"),
            ("mean_loss", "mean train loss", ".3f"),
        ],
    )
    ratios = compare(rows)
    settings = {
        k: getattr(args, k)
        for k in ("preset", "context", "vocab", "batch", "steps", "warmup", "rank", "arms", "rounds", "threads")
    }
    path = write_json(
        args.out,
        {
            "machine": {**info, "load_average_end": list(machine()["load_average"])},
            "settings": settings,
            "runs": runs,
            "summary": rows,
            "ratios": ratios,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
