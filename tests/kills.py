"""SIGKILL at random moments of real CLI runs, then `lmforge resume`: the harness behind tests/test_kills.py
and benchmarks/soak.py.

A kind of run is a function that writes its inputs into a folder and returns the CLI arguments that start it
(``Kind``). ``reference`` runs it once uninterrupted; ``kill_and_resume`` starts it again in a fresh folder,
kills it (SIGKILL: no handler runs) at a random moment of its own progress, checks what the kill left
(``latest`` names a whole checkpoint; ``best`` is a whole model folder), resumes until the run finishes, and
compares the result with the reference: every step's loss (the last one logged for that step) and the final
weights, bit for bit (fp32 CPU).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from safetensors.torch import load_file

from lmforge.train.checkpoint import damage
from tests.conftest import VERSE

ROOT = Path(__file__).resolve().parents[1]
COMMON = [
    "train.precision=fp32",
    "train.warmup_steps=0",
    "train.save_every=2",
    "train.eval_every=3",
    "train.keep_last=2",
    "train.log_every=1",
    "train.report_to=none",
    "sample.every=100000",
    "sample.max_new_tokens=2",
]


@dataclass
class Kind:
    name: str
    setup: Callable[[Path, Path], list[str]]  # (folder, base model) -> CLI arguments writing runs/<name>


def _config(folder: Path, body: str = "seed: 0\n") -> Path:
    cfg = folder / "c.yaml"
    cfg.write_text(body, encoding="utf-8")
    return cfg


def _verse(folder: Path) -> Path:
    text = folder / "verse.txt"
    text.write_text(VERSE * 20, encoding="utf-8")
    return text


def _rows(folder: Path, name: str, n: int, shift: int = 0) -> Path:
    path = folder / name
    words = VERSE.split()
    rows = [
        {"prompt": " ".join(words[i + shift : i + shift + 4]) + ": ", "completion": " ".join(words[i + 4 : i + 9])}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def pretrain_args(folder: Path, base: Path | None = None, max_steps: int = 10) -> list[str]:
    return [
        "pretrain",
        str(_config(folder)),
        "name=run",
        f"data.train={_verse(folder)}",
        f"out_dir={folder / 'runs'}",
        f"log_dir={folder / 'logs'}",
        "model.preset=tiny",
        "model.context=32",
        "tokenizer.vocab_size=128",
        "train.batch_size=2",
        f"train.max_steps={max_steps}",
        *COMMON,
    ]


def lora_args(folder: Path, base: Path) -> list[str]:
    return [
        "finetune",
        str(_config(folder)),
        "name=run",
        f"model.base={base}",
        f"data.train={_rows(folder, 'qa.jsonl', 24)}",
        "data.val_fraction=0.25",
        f"out_dir={folder / 'runs'}",
        f"log_dir={folder / 'logs'}",
        "lora.method=lora",
        "lora.r=4",
        "train.batch_size=4",
        "train.lr=1e-2",
        "train.max_steps=10",
        *COMMON,
    ]


def stages_args(folder: Path, base: Path) -> list[str]:
    second = _rows(folder, "second.jsonl", 16, shift=3)
    body = f"seed: 0\nstages:\n  - data:\n      train: [{second}]\n    max_steps: 4\n"
    return [*lora_args(folder, base)[:1], str(_config(folder, body)), *lora_args(folder, base)[2:]]


def rl_args(folder: Path, base: Path) -> list[str]:
    """RLOO under LoRA: rollouts sampled from the policy, rewarded for valid JSON and length."""
    rewards = "[{name: json_valid, weight: 1.0}, {name: tests.user_plugins:length_reward, weight: 0.01}]"
    return [
        "rl",
        str(_config(folder)),
        "name=run",
        f"model.base={base}",
        f"out_dir={folder / 'runs'}",
        f"log_dir={folder / 'logs'}",
        "lora.method=lora",
        "lora.r=4",
        "train.batch_size=2",
        "train.lr=1e-3",
        "train.max_steps=10",
        "rl.algorithm=rloo",
        "rl.prompts=[The, Le vent, A, Shall]",
        "rl.eval_prompts=1",
        "rl.num_generations=3",
        "rl.max_new_tokens=6",
        f"rl.rewards={rewards}",
        *COMMON,
    ]


KINDS = {
    k.name: k
    for k in (
        Kind("pretrain", pretrain_args),
        Kind("lora", lora_args),
        Kind("stages", stages_args),
        Kind("rl", rl_args),
    )
}


def weights_file(run: Path) -> Path:
    model = run / "model"
    adapter = model / "adapter_model.safetensors"
    return adapter if adapter.is_file() else model / "model.safetensors"


def step_losses(run: Path) -> dict[int, float]:
    """Each step's training loss, the last logged for it (a resumed run logs the steps after its checkpoint
    again)."""
    out: dict[int, float] = {}
    for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "loss" in row and "step" in row:
            out[row["step"]] = row["loss"]
    return out


def cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "lmforge.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def finish(args: list[str], timeout: float = 600) -> None:
    proc = cli(args)
    _, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"lmforge {args[0]} failed ({proc.returncode}): {err[-2000:]}")


@dataclass
class Reference:
    losses: dict[int, float]
    weights: dict
    seconds: float
    first_step_s: float  # when metrics.jsonl first appeared: training had begun


def reference(kind: Kind, folder: Path, base: Path | None) -> Reference:
    folder.mkdir(parents=True, exist_ok=True)
    args = kind.setup(folder, base)
    metrics = folder / "runs" / "run" / "metrics.jsonl"
    t0 = time.time()
    proc, first = cli(args), None
    while proc.poll() is None:
        if first is None and metrics.is_file():
            first = time.time() - t0
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(f"lmforge {args[0]} failed: {proc.stderr.read()[-2000:]}")
    run = folder / "runs" / "run"
    return Reference(step_losses(run), load_file(weights_file(run)), time.time() - t0, first or 0.0)


@dataclass
class Outcome:
    kind: str
    killed_at_s: float
    left: str  # what the kill left: "nothing", "config only", "checkpoint step-N"
    resumed: bool = False
    losses_equal: bool = False
    weights_equal: bool = False
    problems: list[str] = field(default_factory=list)


def check_left(run: Path) -> tuple[str, list[str]]:
    """What a kill left behind, and anything broken in it (a mixed or partial checkpoint or best/)."""
    problems, ckdir = [], run / "checkpoints"
    latest = ckdir / "latest"
    left = "nothing" if not run.exists() else "config only"
    if latest.is_file():
        named = ckdir / latest.read_text(encoding="utf-8").strip()
        left = f"checkpoint {named.name}"
        bad = damage(named) if named.is_dir() else "missing"
        if bad:
            problems.append(f"latest names a broken checkpoint {named.name}: {bad}")
    best = run / "best"
    if best.is_symlink() or best.exists():
        weights = [*best.glob("*.safetensors")]
        if not best.is_dir() or not weights or not (best / "tokenizer.json").is_file():
            problems.append("best/ is not a whole model folder")
        for w in weights:
            try:
                load_file(w)
            except Exception as e:  # noqa: BLE001  (any failure to read is the finding)
                problems.append(f"best/{w.name} does not load: {e}")
    return left, problems


def logged_step(run: Path) -> int:
    """The last training step the run has logged (-1 before its first)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return -1
    last = -1
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # the line being written
            continue
        if "loss" in row and "step" in row:
            last = max(last, row["step"])
    return last


def kill_moment(proc: subprocess.Popen, run: Path, ref: Reference, rng: random.Random) -> float:
    """Waits for a random moment of the run's own progress, kills it there (SIGKILL) and returns the seconds
    since the start. One kill in ten falls before training starts; the others after a random step k has been
    logged, plus a random part of a step's time (so inside step k+1, its evaluation or its checkpoint write):
    timed from the killed run's own log, not from the reference's clock, so a slow machine still kills
    mid-run."""
    t0 = time.time()
    steps = sorted(ref.losses)
    step_s = max(0.01, (ref.seconds - ref.first_step_s) / max(1, len(steps)))
    if rng.random() < 0.1:
        deadline = t0 + rng.uniform(0.3, 1.0) * max(ref.first_step_s, 0.5)
        while proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
    else:
        target = rng.choice(steps[:-2] or steps)  # two steps and the final save still to come
        while proc.poll() is None and logged_step(run) < target:
            time.sleep(0.02)
        pause = time.time() + rng.uniform(0.0, 1.5) * step_s
        while proc.poll() is None and time.time() < pause:
            time.sleep(0.005)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return time.time() - t0


def kill_and_resume(kind: Kind, folder: Path, base: Path | None, ref: Reference, rng: random.Random) -> Outcome:
    """Starts the run, SIGKILLs it at a random moment of its training, resumes it to the end, compares."""
    folder.mkdir(parents=True, exist_ok=True)
    args = kind.setup(folder, base)
    run = folder / "runs" / "run"
    proc = cli(args)
    delay = kill_moment(proc, run, ref, rng)
    left, problems = check_left(run)
    out = Outcome(kind.name, round(delay, 2), left, problems=problems)
    if proc.returncode not in (0, -signal.SIGKILL):
        out.problems.append(f"the run failed by itself ({proc.returncode}): {proc.stderr.read()[-500:]}")
    if proc.returncode == 0:
        out.left = "finished before the kill"
    elif (run / "checkpoints" / "latest").is_file():
        finish(["resume", str(run)])
        out.resumed = True
    else:  # nothing to resume from: the user starts the command again
        finish(args)
    out.problems += check_left(run)[1]
    losses = step_losses(run)
    out.losses_equal = losses == ref.losses
    got = load_file(weights_file(run))
    out.weights_equal = got.keys() == ref.weights.keys() and all(got[k].equal(ref.weights[k]) for k in got)
    return out


def base_model(folder: Path) -> Path:
    """A tiny pretrained base for the fine-tuning kinds (a 4-step pretrain)."""
    if not (folder / "runs" / "run" / "model").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        finish(pretrain_args(folder, max_steps=4))
    return folder / "runs" / "run" / "model"
