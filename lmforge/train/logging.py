"""Where a run reports: a progress bar, ``metrics.jsonl``, TensorBoard events, a loss-curve PNG."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

from lmforge.core.config import RunConfig


class RunLogger:
    """Writes only on the main process; every other process gets a silent logger."""

    def __init__(self, cfg: RunConfig, main: bool = True, quiet: bool = False):
        self.main, self.quiet = main, quiet
        self.run_dir = cfg.run_dir
        self.tb_dir = Path(cfg.log_dir) / cfg.name
        self.log_every = cfg.train.log_every
        self._bar = self._tb = None
        self._t = time.time()
        self._tokens = 0
        # whole-run throughput: every token over the loop's wall-clock, evaluation and saving included
        self._run_t0, self._run_cpu0 = time.time(), time.process_time()
        self._run_tokens = self._run_steps = self._last_step = 0
        self.history: list[dict] = []
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._metrics = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")

    def _writer(self):
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.tb_dir))
        return self._tb

    def info(self, msg: str) -> None:
        if self.main and not self.quiet:
            (self._bar.write if self._bar else print)(msg)

    def start(self, step: int, total: int) -> None:
        if self.main and not self.quiet:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=step, desc="train", file=sys.stderr, dynamic_ncols=True,
                             mininterval=1.0)
        self._t = self._run_t0 = time.time()
        self._run_cpu0 = time.process_time()

    def _record(self, row: dict) -> None:
        self.history.append(row)
        self._metrics.write(json.dumps(row) + "\n")
        self._metrics.flush()

    def step(self, step: int, loss: float, lr: float, tokens: int, grad_norm: Optional[float]) -> None:
        if not self.main:
            return
        self._tokens += tokens
        self._run_tokens += tokens
        self._run_steps += 1
        self._last_step = step
        now = time.time()
        if self._bar:
            self._bar.update(1)
        if step % self.log_every and step != 1:
            return
        tok_s = self._tokens / max(now - self._t, 1e-9)
        self._t, self._tokens = now, 0
        row = {"step": step, "loss": loss, "lr": lr, "tokens_per_s": tok_s}
        if grad_norm is not None:
            row["grad_norm"] = grad_norm
        self._record(row)
        w = self._writer()
        for k, v in row.items():
            if k != "step":
                w.add_scalar(f"train/{k}", v, step)
        if self._bar:
            self._bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tok_s:,.0f}")

    def eval(self, step: int, metrics: dict) -> None:
        if not self.main or not metrics:
            return
        self._record({"step": step, **metrics})
        w = self._writer()
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                w.add_scalar(f"eval/{k}", v, step)
        w.flush()
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        self.info(f"step {step}: {shown}")

    def text(self, step: int, tag: str, text: str) -> None:
        if self.main:
            self._writer().add_text(tag, text, step)

    def summary(self) -> dict:
        """Steps, tokens and seconds since ``start``: the run's real throughput, not its best step's."""
        secs = time.time() - self._run_t0
        # CPU seconds of this process: on a machine shared with other work, tokens per CPU-second
        # still measures the code (with OMP_NUM_THREADS=1 it is a per-core figure)
        cpu = time.process_time() - self._run_cpu0
        return {"step": self._last_step, "run_steps": self._run_steps, "run_tokens": self._run_tokens,
                "run_time_s": secs, "run_tokens_per_s": self._run_tokens / max(secs, 1e-9), "run_cpu_s": cpu,
                **peak_memory()}

    def close(self) -> None:
        if not self.main:
            return
        if self._run_steps:
            self._record(self.summary())
        if self._bar:
            self._bar.close()
            self._bar = None
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None
        self._metrics.flush()
        plot_losses(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png")


def peak_memory() -> dict:
    """High-water memory of this process: GPU allocations where CUDA is used, else resident set size."""
    import resource

    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def plot_losses(metrics_path: Path, out: Path) -> None:
    """Training and validation loss against step, from metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(l) for l in metrics_path.read_text(encoding="utf-8").splitlines() if l.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if not train:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*train), label="train loss", lw=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
