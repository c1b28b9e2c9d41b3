"""Where a run reports: a progress bar, ``metrics.jsonl``, a loss-curve PNG, and the experiment trackers
of ``train.report_to`` through accelerate's tracker API (TensorBoard events in ``log_dir/<name>``,
Weights & Biases, MLflow)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from accelerate.state import PartialState
from accelerate.tracking import GeneralTracker, MLflowTracker, TensorBoardTracker, WandBTracker, filter_trackers

from lmforge.core.config import RunConfig
from lmforge.core.errors import LmforgeError, first_line

# report_to name -> what to pip install when its package is missing
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow-skinny"}
# the project (W&B) or experiment (MLflow) every run is a run of, unless WANDB_PROJECT / MLFLOW_EXPERIMENT_NAME say
PROJECT = "lmforge"


def make_trackers(cfg: RunConfig, quiet: bool = False) -> list[GeneralTracker]:
    """accelerate's tracker objects for ``cfg.train.report_to``, not started yet.

    An unknown name or a tracker whose package is absent is one line naming the key and what to install.
    """
    names = list(cfg.train.report_to)
    for name in names:
        if name not in TRACKER_PACKAGES:
            raise LmforgeError(
                f"train.report_to: unknown tracker {name!r}; choose from {', '.join(TRACKER_PACKAGES)} or none"
            )
    PartialState()  # accelerate's trackers and its logging need the (here already built) process state
    available = {t.value for t in filter_trackers(names, cfg.log_dir)}
    for name in names:
        if name not in available:
            raise LmforgeError(
                f"train.report_to: {name} is not installed; pip install {TRACKER_PACKAGES[name]} "
                f"(or pip install 'lmforge[trackers]'), or remove {name} from train.report_to"
            )
    trackers: list[GeneralTracker] = []
    for name in names:
        if name == "tensorboard":  # events in log_dir/<name>, as `tensorboard --logdir logs` expects
            trackers.append(TensorBoardTracker(cfg.name, cfg.log_dir))
        elif name == "wandb":  # WANDB_MODE=offline keeps the run in <dir>/wandb/offline-run-*, no account needed
            wandb_dir = Path(os.environ.get("WANDB_DIR") or cfg.log_dir)
            wandb_dir.mkdir(parents=True, exist_ok=True)
            extra = {"settings": {"silent": True}} if quiet else {}
            trackers.append(
                WandBTracker(
                    os.environ.get("WANDB_PROJECT", PROJECT), name=cfg.name, dir=str(wandb_dir.resolve()), **extra
                )
            )
        elif name == "mlflow":
            if not os.environ.get("MLFLOW_TRACKING_URI"):
                import mlflow

                # a local store beside the TensorBoard events; MLflow 3 asks for this opt-in to use files
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
                mlflow.set_tracking_uri((Path(cfg.log_dir) / "mlruns").resolve().as_uri())
            trackers.append(MLflowTracker(experiment_name=PROJECT, run_name=cfg.name))
    return trackers


def flat_config(cfg: RunConfig) -> dict:
    """The resolved config as ``{"train.lr": 0.001, ...}``: scalars, lists as JSON (what trackers store as hparams)."""
    out: dict = {}

    def walk(node: dict, prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict) and v:
                walk(v, f"{prefix}{k}.")
            else:
                out[prefix + k] = json.dumps(v) if isinstance(v, (list, dict)) else v

    walk(cfg.model_dump(mode="json"), "")
    return out


# With stderr redirected (a log file, CI), a progress bar's carriage-return frames would fill the file: plain
# lines at this interval instead.
PLAIN_EVERY_S = 30.0


class RunLogger:
    """Writes only on the main process; every other process gets a silent logger.

    Each logger is one segment of a run (the run, a later stage, a resume): its trackers start here, with the
    resolved config stored once as hyperparameters, and finish in ``close``.
    """

    def __init__(self, cfg: RunConfig, main: bool = True, quiet: bool = False):
        self.main, self.quiet = main, quiet
        self.run_dir = cfg.run_dir
        self.tb_dir = Path(cfg.log_dir) / cfg.name
        self.log_every = cfg.train.log_every
        self._bar = None
        self._t = time.time()
        self._tokens = 0
        # whole-run throughput: every token over the loop's wall-clock, evaluation and saving included
        self._run_t0, self._run_cpu0 = time.time(), time.process_time()
        self._run_tokens = self._run_steps = self._last_step = 0
        self.history: list[dict] = []
        # checked on every process, so that a missing package stops them all before training
        trackers = make_trackers(cfg, quiet)
        self.trackers: list[GeneralTracker] = []
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._start(trackers, flat_config(cfg))
            self._metrics = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")

    def _start(self, trackers: list[GeneralTracker], hparams: dict) -> None:
        for t in trackers:
            try:
                t.start()
                self.trackers.append(t)
                t.store_init_configuration(hparams)
            except Exception as e:  # a login, a server, a store: the tracker's own setup, said in one line
                self._finish()
                raise LmforgeError(f"train.report_to: {t.name} could not start: {first_line(e)}") from e

    def _log(self, values: dict, step: int) -> None:
        for t in self.trackers:
            t.log(values, step=step)

    def _finish(self) -> None:
        for t in self.trackers:
            try:
                t.finish()
            except Exception as e:  # the run's own outputs are saved already; say it and go on
                print(f"warning: {t.name} did not finish cleanly: {first_line(e)}", file=sys.stderr)
        self.trackers = []

    def info(self, msg: str) -> None:
        if self.main and not self.quiet:
            (self._bar.write if self._bar else print)(msg)

    def start(self, step: int, total: int) -> None:
        """A progress bar on a terminal; redirected to a file, one plain line every ``PLAIN_EVERY_S`` seconds."""
        self._total, self._plain_t = total, time.time()
        if self.main and not self.quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=step, desc="train", file=sys.stderr, dynamic_ncols=True, mininterval=1.0
            )
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
        elif self.main and not self.quiet and now - self._plain_t >= PLAIN_EVERY_S:
            self._plain_t = now
            rate = self._run_tokens / max(now - self._run_t0, 1e-9)
            print(
                f"step {step}/{self._total}  loss {loss:.4f}  lr {lr:.3g}  {rate:,.0f} tok/s  "
                f"{now - self._run_t0:.0f}s",
                file=sys.stderr,
                flush=True,
            )
        if step % self.log_every and step != 1:
            return
        tok_s = self._tokens / max(now - self._t, 1e-9)
        self._t, self._tokens = now, 0
        row = {"step": step, "loss": loss, "lr": lr, "tokens_per_s": tok_s}
        if grad_norm is not None:
            row["grad_norm"] = grad_norm
        self._record(row)
        self._log({f"train/{k}": v for k, v in row.items() if k != "step"}, step)
        if self._bar:
            self._bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tok_s:,.0f}")

    def scalars(self, step: int, prefix: str, values: dict) -> None:
        """Numbers a batch source reports for its step (rollouts: rewards), every ``log_every`` steps."""
        if not self.main or not values or (step % self.log_every and step != 1):
            return
        row = {f"{prefix}/{k}": v for k, v in values.items()}
        self._record({"step": step, **row})
        self._log(row, step)

    def eval(self, step: int, metrics: dict) -> None:
        if not self.main or not metrics:
            return
        self._record({"step": step, **metrics})
        self._log({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}, step)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        self.info(f"step {step}: {shown}")

    def text(self, step: int, tag: str, text: str) -> None:
        """A text sample: TensorBoard's text tab, a W&B string, an MLflow artifact ``<tag>/step-<step>.txt``."""
        if not self.main:
            return
        for t in self.trackers:
            if t.name == "mlflow":  # MLflow metrics are numbers only
                import mlflow

                mlflow.log_text(text, f"{tag}/step-{step:06d}.txt")
            else:  # TensorBoardTracker.log writes a str value with add_text
                t.log({tag: text}, step=step)

    def summary(self) -> dict:
        """Steps, tokens and seconds since ``start``: the run's real throughput, not its best step's."""
        secs = time.time() - self._run_t0
        # CPU seconds of this process: on a machine shared with other work, tokens per CPU-second
        # still measures the code (with OMP_NUM_THREADS=1 it is a per-core figure)
        cpu = time.process_time() - self._run_cpu0
        return {
            "step": self._last_step,
            "run_steps": self._run_steps,
            "run_tokens": self._run_tokens,
            "run_time_s": secs,
            "run_tokens_per_s": self._run_tokens / max(secs, 1e-9),
            "run_cpu_s": cpu,
            **peak_memory(),
        }

    def close(self) -> None:
        if not self.main:
            return
        if self._run_steps:
            self._record(self.summary())
        if self._bar:
            self._bar.close()
            self._bar = None
        self._finish()
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

    rows = [json.loads(line) for line in metrics_path.read_text(encoding="utf-8").splitlines() if line.strip()]
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
