"""An Optuna study whose trials are ordinary runs: ``runs/<sweep>/trial-N/``, the best linked as ``best``.

The study lives in ``runs/<sweep>/study.db`` (SQLite), so running the sweep again resumes it and several
processes can share it; Optuna's storage hands each its own trials. A trial left RUNNING by a process that
died is failed and its settings queued again: at once when that process ran on this machine (its pid is
gone), after the heartbeat's grace period when it ran elsewhere.
"""

from __future__ import annotations

import copy
import math
import os
import random
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, Optional

import optuna
import sqlalchemy
import yaml
from optuna.trial import TrialState

from lmforge.core.config import RunConfig, apply_override, load_config
from lmforge.core.errors import LmforgeError
from lmforge.sweep.deadline import Deadline, TrialTimeout
from lmforge.sweep.spec import Sweep, config_value, is_int, load_sweep
from lmforge.train.run import finetune, pretrain

HEARTBEAT_S, GRACE_S = 20, 90
ENDED = (TrialState.COMPLETE, TrialState.PRUNED)


class MetricMissing(LmforgeError):
    """The sweep's metric is not among what the run evaluates: every trial would fail the same way."""


class TrialFailed(Exception):
    """Training stopped with an error (a diverged loss): the trial fails, the sweep goes on."""


def sweep_dir(sweep: Sweep, cfg: RunConfig) -> Path:
    return Path(cfg.out_dir) / sweep.name


def open_study(sweep: Sweep, folder: Path, create: bool = True) -> optuna.Study:
    """The sweep's study in ``folder/study.db``, created on first use."""
    db = folder / "study.db"
    if not create and not db.is_file():
        raise LmforgeError(f"{folder}: no study yet (run the sweep first)")
    folder.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own one line per trial instead
    make = lambda: optuna.create_study(
        study_name=sweep.name,
        storage=_storage(db),
        direction=sweep.direction,
        sampler=make_sampler(sweep),
        pruner=make_pruner(sweep),
        load_if_exists=True,
    )
    for _ in range(4):  # processes started together race to create the tables: the losers try again
        try:
            return make()
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError):
            time.sleep(0.5 + random.random())
    return make()


def _storage(db: Path) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():  # the heartbeat and its retry callback are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            f"sqlite:///{db.resolve()}",
            engine_kwargs={"connect_args": {"timeout": 60}},  # processes sharing the file wait for its lock
            heartbeat_interval=HEARTBEAT_S,
            grace_period=GRACE_S,
            heartbeat_stale_trial_callback=requeue,
        )


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queues a dead trial's settings again (up to 3 times), without the dead process's pid and host."""
    trial = copy.deepcopy(trial)
    trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("pid", "host")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)(study, trial)


def make_sampler(sweep: Sweep) -> optuna.samplers.BaseSampler:
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=sweep.seed)
    if sweep.sampler == "grid":
        grid = {k: p.choices if p.choices is not None else _steps(k, p) for k, p in sweep.space.items()}
        return optuna.samplers.GridSampler(grid, seed=sweep.seed)
    # TPE: the first few trials are random draws, then the model of good and bad settings takes over
    return optuna.samplers.TPESampler(seed=sweep.seed, n_startup_trials=min(10, max(3, len(sweep.space) + 1)))


def make_pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
    pr = sweep.pruner
    if pr.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=pr.startup_trials, n_warmup_steps=pr.warmup_steps)
    if pr.type == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=pr.min_steps or 1, reduction_factor=pr.reduction_factor)
    return optuna.pruners.NopPruner()


def sample(trial: optuna.Trial, sweep: Sweep, base: RunConfig) -> dict[str, Any]:
    """One value per searched key, in the space's order; a conditional key only when its condition holds."""
    chosen: dict[str, Any] = {}
    for key, p in sweep.space.items():
        if not all(_matches(chosen[k] if k in chosen else config_value(base, k), v) for k, v in p.when.items()):
            continue
        if p.choices is not None:
            chosen[key] = trial.suggest_categorical(key, p.choices)
        elif is_int(key, p):
            chosen[key] = trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            chosen[key] = trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)
    return chosen


def baseline_values(sweep: Sweep, base: RunConfig) -> dict[str, Any]:
    """The base config's values of the searched keys (a conditional key where its condition holds; a key the
    base leaves unset is sampled); one outside its choices is a one-line error, as the trial could not take it."""
    out: dict[str, Any] = {}
    for key, p in sweep.space.items():
        value = config_value(base, key)
        if value is not None and all(_matches(out.get(k, config_value(base, k)), v) for k, v in p.when.items()):
            if p.choices is not None and value not in p.choices:
                raise LmforgeError(
                    f"sweep {sweep.name}: baseline: {key}={value!r} (the base config's) is not among its choices "
                    f"{p.choices}: add it there, or set baseline: false"
                )
            out[key] = value
    return out


def trial_config(sweep: Sweep, tree: dict, base: RunConfig, values: dict[str, Any], number: int) -> RunConfig:
    """The base config with the trial's values, as the run ``<sweep folder>/trial-N`` judged on the metric."""
    t = copy.deepcopy(tree)
    for key, value in values.items():
        apply_override(t, key, value)
    folder = sweep_dir(sweep, base)
    apply_override(t, "name", f"trial-{number}")
    apply_override(t, "out_dir", str(folder))
    apply_override(t, "log_dir", str(Path(base.log_dir) / sweep.name))
    apply_override(t, "train.best_metric", sweep.metric)
    apply_override(t, "train.best_mode", "max" if sweep.direction == "maximize" else "min")
    return load_config(None, base=t)


def run_sweep(path: str | Path, say: Callable[[str], None] = print) -> optuna.Study:
    """Runs trials until the budget is spent (over every process sharing the study); returns the study."""
    sweep, tree, base = load_sweep(path)
    first = baseline_values(sweep, base) if sweep.baseline else None  # checked before the study exists
    folder = sweep_dir(sweep, base)
    study = open_study(sweep, folder)
    _keep_sweep_file(sweep, folder)
    if first is not None and not study.get_trials(deepcopy=False):
        study.enqueue_trial(first)
    revived = revive_dead_trials(study)
    if revived:
        say(f"sweep {sweep.name}: trials {', '.join(map(str, revived))} died with their process; queued again")
    n = sweep.budget.n_trials
    if n is not None and _spent(study) >= n:
        say(f"sweep {sweep.name}: the budget of {n} trials is spent ({folder / 'study.db'})")
        return study
    runner = finetune if base.model.base else pretrain

    def objective(trial: optuna.Trial) -> float:
        values = sample(trial, sweep, base)
        cfg = trial_config(sweep, tree, base, values, trial.number)
        trial.set_user_attr("run_dir", str(cfg.run_dir))
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        say(f"trial {trial.number}: {_settings(values)}")
        best = _Best(sweep.direction == "maximize")
        deadline = Deadline(sweep.budget.trial_timeout_s)
        last = last_step(cfg)

        def on_eval(step: int, metrics: dict) -> None:
            value = metrics.get(sweep.metric)
            if value is None:
                raise MetricMissing(
                    f"metric {sweep.metric!r} is not evaluated by this run; it reports {', '.join(sorted(metrics))}"
                )
            best.add(value)
            with deadline.held():  # a report written whole, then the limit if it passed meanwhile
                trial.report(value, step)
                prune = trial.should_prune()
            if prune and step != last:  # at the last evaluation the work is done: the trial completes
                raise optuna.TrialPruned(f"{sweep.metric}={value:.4g} at step {step}")

        try:
            with deadline:
                runner(cfg, quiet=True, on_eval=on_eval)
        except MetricMissing:
            raise
        except LmforgeError as e:
            trial.set_user_attr("error", str(e))
            raise TrialFailed(str(e)) from None
        except TrialTimeout as e:
            stop_late_trial(trial, best, str(e))
        if best.value is None:
            raise MetricMissing(f"the run never evaluated {sweep.metric!r}: lower train.eval_every")
        return best.value

    def after(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # a failed trial has no value: only a complete one is formatted with it
        what = f"{sweep.metric}={trial.value:.4g}" if trial.state == TrialState.COMPLETE else trial.state.name.lower()
        what = {"fail": "failed"}.get(what, what) + "".join(
            f" ({trial.user_attrs[k]})" for k in ("stopped", "error") if k in trial.user_attrs
        )
        say(f"trial {trial.number}: {what}" + _best_line(study, sweep))
        link_best(study, folder)
        others = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if n is not None and _spent(study) + others >= n:
            study.stop()

    study.optimize(objective, timeout=sweep.budget.timeout_s, catch=(TrialFailed,), callbacks=[after])
    link_best(study, folder)
    return study


def last_step(cfg: RunConfig) -> Optional[int]:
    """The step of a run's last evaluation when its steps are fixed (None when epochs or a clock decide)."""
    tc = cfg.train
    if tc.epochs or tc.max_time_s or not isinstance(tc.max_steps, int):
        return None
    return tc.max_steps + sum(s.max_steps or tc.max_steps for s in cfg.stages)


def stop_late_trial(trial: optuna.Trial, best: _Best, why: str) -> NoReturn:
    """A trial past ``trial_timeout_s``: pruned at its last report when it made one (the sampler then learns
    from it as from any pruned trial), failed otherwise; either way it used its share of the budget."""
    if best.value is None:
        trial.set_user_attr("error", why)
        raise TrialFailed(why)
    trial.set_user_attr("stopped", why)
    raise optuna.TrialPruned(why)


def _keep_sweep_file(sweep: Sweep, folder: Path) -> None:
    """The sweep as run, beside its study: ``lmforge resume runs/<sweep>`` reads it."""
    text = yaml.safe_dump(sweep.model_dump(mode="json"), sort_keys=False)
    tmp = folder / f".sweep.yaml.{os.getpid()}"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, folder / "sweep.yaml")


def revive_dead_trials(study: optuna.Study) -> list[int]:
    """Trials RUNNING in a process of this machine that no longer exists: failed, their settings queued again."""
    host, revived = socket.gethostname(), []
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") != host or pid is None or _alive(pid):
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another process got there first
            continue
        requeue(study, storage.get_trial(t._trial_id))
        revived.append(t.number)
    return revived


def link_best(study: optuna.Study, folder: Path) -> Optional[Path]:
    """Points ``folder/best`` at the best trial's best model (``trial-N/best``), swapped atomically."""
    try:
        best = study.best_trial
    except ValueError:  # no trial complete yet
        return None
    target = Path(best.user_attrs.get("run_dir", folder / f"trial-{best.number}")).name + "/best"
    link, tmp = folder / "best", folder / f".best.link.{os.getpid()}"
    if link.is_symlink() and os.readlink(link) == target:
        return link
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    return link


def _spent(study: optuna.Study) -> int:
    """Trials that used budget: complete, pruned, or failed in training (not those whose process died)."""
    trials = study.get_trials(deepcopy=False)
    return sum(t.state in ENDED or (t.state == TrialState.FAIL and "error" in t.user_attrs) for t in trials)


def _alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _matches(value: Any, wanted: Any) -> bool:
    return value in wanted if isinstance(wanted, list) else value == wanted


def _steps(key: str, p) -> list:
    count = math.floor((p.high - p.low) / p.step + 1e-9) + 1
    values = [p.low + i * p.step for i in range(count)]
    return [int(v) for v in values] if is_int(key, p) else values


def _settings(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()) or "(base)"


def _best_line(study: optuna.Study, sweep: Sweep) -> str:
    try:
        b = study.best_trial
    except ValueError:
        return ""
    return f"  (best: trial {b.number}, {sweep.metric}={b.value:.4g})"


class _Best:
    def __init__(self, higher: bool):
        self.higher, self.value = higher, None

    def add(self, v: float) -> None:
        if math.isfinite(v) and (self.value is None or (v > self.value if self.higher else v < self.value)):
            self.value = v
