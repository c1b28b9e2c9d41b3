"""lmforge sweep: the space maps onto config keys, pruning stops a trial, a killed sweep resumes, processes share
one study. Tiny models, a few steps per trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
import sqlalchemy  # noqa: E402  (installed with optuna)

from lmforge.core.errors import LmforgeError  # noqa: E402
from lmforge.sweep.spec import load_sweep  # noqa: E402
from lmforge.sweep.study import (  # noqa: E402
    baseline_values,
    open_study,
    run_sweep,
    sample,
    sweep_dir,
    trial_config,
)
from tests.conftest import VERSE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _base(tmp_path: Path, steps: int = 20) -> Path:
    corpus = tmp_path / "verse.txt"
    corpus.write_text(VERSE * 40, encoding="utf-8")
    cfg = tmp_path / "base.yaml"
    cfg.write_text(
        f"name: base\nout_dir: {tmp_path / 'runs'}\nlog_dir: {tmp_path / 'logs'}\n"
        f"data: {{train: {corpus}}}\ntokenizer: {{vocab_size: 128}}\nmodel: {{preset: tiny, context: 64}}\n"
        f"train: {{batch_size: 8, lr: 3.0e-3, warmup_steps: 2, max_steps: {steps}, eval_every: 5, eval_batches: 2,\n"
        "        log_every: 5, precision: fp32, report_to: none, save_every: 5}\n"
        "sample: {max_new_tokens: 4, every: 1000}\n",
        encoding="utf-8",
    )
    return cfg


def _sweep(tmp_path: Path, body: str, name: str = "s", steps: int = 20) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"name: {name}\nconfig: {_base(tmp_path, steps)}\n" + body, encoding="utf-8")
    return p


def _lmforge(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "lmforge.cli", *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def test_space_maps_onto_config_keys(tmp_path):
    path = _sweep(
        tmp_path,
        "metric: val_loss\nbudget: {n_trials: 3}\nset: {lora.r: 8}\n"
        "space:\n"
        "  train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n"
        "  train.batch_size: {low: 4, high: 16, step: 4}\n"
        "  train.objective_args.alpha: {choices: [0.5, 1.0]}\n"
        "  tokenizer.vocab_size: {choices: [96, 128], when: {train.batch_size: [4, 8]}}\n",
    )
    sweep, tree, base = load_sweep(path)
    assert sweep.direction == "minimize"  # val_loss declares lower is better
    fixed = {"train.lr": 2e-3, "train.batch_size": 12, "train.objective_args.alpha": 0.5}
    values = sample(optuna.trial.FixedTrial(fixed), sweep, base)
    assert values == fixed  # batch_size 12: the conditional vocab_size is not sampled
    cfg = trial_config(sweep, tree, base, values, 7)
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.objective_args) == (2e-3, 12, {"alpha": 0.5})
    assert cfg.run_dir == tmp_path / "runs" / "s" / "trial-7" and cfg.lora.r == 8
    assert cfg.train.best_metric == "val_loss" and cfg.train.best_mode == "min"
    fixed |= {"train.batch_size": 8, "tokenizer.vocab_size": 96}
    values = sample(optuna.trial.FixedTrial(fixed), sweep, base)
    assert values["tokenizer.vocab_size"] == 96 and isinstance(values["train.batch_size"], int)
    # the baseline trial: the base config's own values (batch 8 meets vocab_size's condition; alpha is unset)
    assert baseline_values(sweep, base) == {"train.lr": 3e-3, "train.batch_size": 8, "tokenizer.vocab_size": 128}
    sweep.space["tokenizer.vocab_size"].choices = [96, 256]  # the base's 128 is no choice: a trial could not take it
    with pytest.raises(LmforgeError, match=r"baseline: tokenizer.vocab_size=128 \(the base config's\) is not among"):
        baseline_values(sweep, base)


@pytest.mark.parametrize("path", sorted((ROOT / "recipes" / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_sweep_files_load(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # their configs are named from the checkout's root, as the recipes' data
    sweep, _, base = load_sweep(path)
    assert sweep.space and (sweep.budget.n_trials or sweep.budget.timeout_s)
    assert set(baseline_values(sweep, base)) <= set(sweep.space)


@pytest.mark.parametrize(
    "space,expected",
    [
        ("train.lrr: {low: 1.0e-4, high: 1.0e-2}", "'train.lrr' is not a config key; did you mean 'train.lr'?"),
        ("lora.rank: {choices: [4, 8]}", "did you mean 'lora.r'?"),
        ("train.lr: {low: 0, high: 1.0e-2}", "train.lr=0.0: config key 'train.lr'"),
        ("train.lr: {low: 1.0e-2, high: 1.0e-3}", "must be below high"),
        ("train.lr: {low: 1.0e-4, high: 1.0e-2, when: {lora.methd: lora}}", "did you mean 'lora.method'?"),
    ],
)
def test_bad_space_is_one_line_before_any_trial(tmp_path, space, expected):
    path = _sweep(tmp_path, f"metric: val_loss\nbudget: {{n_trials: 2}}\nspace:\n  {space}\n")
    with pytest.raises(LmforgeError) as e:
        load_sweep(path)
    assert expected in str(e.value) and "\n" not in str(e.value)
    r = subprocess.run(
        [sys.executable, "-m", "lmforge.cli", "sweep", str(path)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and expected in r.stderr
    assert not (tmp_path / "runs").exists()  # no study, no trial folder


def test_pruned_trial_stops_early_and_is_marked_pruned(tmp_path, one_thread):
    path = _sweep(
        tmp_path,
        "metric: val_loss\nbudget: {n_trials: 2}\npruner: {type: median, startup_trials: 1}\n"
        "space:\n  train.lr: {low: 1.0e-8, high: 1.0e-2, log: true}\n",
    )
    sweep, _, base = load_sweep(path)
    folder = sweep_dir(sweep, base)
    study = open_study(sweep, folder)
    study.enqueue_trial({"train.lr": 3e-3})  # learns: its val_loss at step 5 sets the median
    study.enqueue_trial({"train.lr": 1e-8})  # learns nothing: worse than the median at the first evaluation
    run_sweep(path, say=lambda s: None)
    t0, t1 = optuna.load_study(study_name="s", storage=f"sqlite:///{folder / 'study.db'}").trials
    assert t0.state == optuna.trial.TrialState.COMPLETE and max(t0.intermediate_values) == 20
    assert t1.state == optuna.trial.TrialState.PRUNED and list(t1.intermediate_values) == [5]
    rows = [json.loads(x) for x in (folder / "trial-1" / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("step", 0) for r in rows) == 5  # training stopped at the pruned evaluation
    assert not (folder / "trial-1" / "model").exists() and (folder / "trial-0" / "model").is_dir()
    assert os.readlink(folder / "best") == "trial-0/best" and (folder / "best" / "config.json").is_file()


def _states(db: Path, name: str = "s") -> list:
    if not db.is_file():
        return []
    try:  # a reader only: the sweep's process creates the tables
        storage = optuna.storages.RDBStorage(f"sqlite:///{db}", skip_table_creation=True)
        return optuna.load_study(study_name=name, storage=storage).trials
    except (KeyError, sqlalchemy.exc.SQLAlchemyError):  # the study or its tables are not there yet
        return []


@pytest.mark.slow
def test_sigkill_mid_trial_then_rerun_finishes_the_budget(tmp_path):
    path = _sweep(
        tmp_path,
        "metric: val_loss\nbudget: {n_trials: 3}\nsampler: random\nseed: 0\npruner: none\n"
        "space:\n  train.lr: {low: 1.0e-3, high: 1.0e-2, log: true}\n",
        steps=40,
    )
    db = tmp_path / "runs" / "s" / "study.db"
    proc = _lmforge("sweep", path)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once trial 1 has evaluated at least once
        trials = _states(db)
        if len(trials) > 1 and trials[0].state.is_finished() and trials[1].intermediate_values:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = _states(db)
    assert killed[1].state == optuna.trial.TrialState.RUNNING
    first_done = (tmp_path / "runs" / "s" / "trial-0" / "metrics.jsonl").read_text()

    r = _lmforge("resume", tmp_path / "runs" / "s")  # as `lmforge sweep` again: the sweep file is kept beside it
    out, _ = r.communicate(timeout=600)
    assert r.returncode == 0, out
    assert "trials 1 died with their process; queued again" in out
    trials = _states(db)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3 and trials[1].state == optuna.trial.TrialState.FAIL
    assert [t.number for t in done] == [0, 2, 3]  # trial 0 not repeated; 2 retries the killed trial's settings
    assert trials[2].params == killed[1].params and trials[2].system_attrs["failed_trial"] == 1
    assert (tmp_path / "runs" / "s" / "trial-0" / "metrics.jsonl").read_text() == first_done


@pytest.mark.slow
def test_two_processes_share_one_study_and_run_distinct_trials(tmp_path):
    lrs = [1e-3, 2e-3, 4e-3, 8e-3]
    path = _sweep(
        tmp_path,
        f"metric: val_loss\nbudget: {{n_trials: 4}}\nsampler: grid\npruner: none\n"
        f"space:\n  train.lr: {{choices: {lrs}}}\n",
        steps=40,
    )
    procs = [_lmforge("sweep", path) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    trials = _states(tmp_path / "runs" / "s" / "study.db")
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert sorted(t.params["train.lr"] for t in trials) == lrs  # each setting once: no trial run twice
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both processes took trials
    assert sorted(p.name for p in (tmp_path / "runs" / "s").glob("trial-*")) == [f"trial-{i}" for i in range(4)]


def test_deadline_waits_while_held_then_stops():
    from lmforge.sweep.deadline import Deadline, TrialTimeout

    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(TrialTimeout, match="trial_timeout_s=0.05"):
        with Deadline(0.05) as d:
            with d.held():
                time.sleep(0.3)  # the limit passes here: nothing is raised inside
                assert d.expired
            pytest.fail("the limit did not stop the block once released")
    assert signal.getsignal(signal.SIGALRM) == before and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    with Deadline(None):  # no limit: no timer
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_trial_past_its_limit_is_stopped_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """Three trials, each limited to 1 s: one hangs after an evaluation (pruned there), one hangs before any
    (failed), one finishes; the sweep records all three with their reason and spends its budget of 3."""
    import lmforge.sweep.study as study_mod

    def fake_run(cfg, quiet, on_eval):  # the trial's behaviour, chosen by its lr
        if cfg.train.lr == 1e-3:
            on_eval(5, {"val_loss": 2.0})
            time.sleep(60)
        elif cfg.train.lr == 2e-3:
            while True:
                pass  # busy in Python: the signal stops it all the same
        on_eval(5, {"val_loss": 1.5})
        return cfg.run_dir

    monkeypatch.setattr(study_mod, "pretrain", fake_run)
    path = _sweep(
        tmp_path,
        "metric: val_loss\nbudget: {n_trials: 3, trial_timeout_s: 1}\nsampler: random\npruner: none\n"
        "space:\n  train.lr: {choices: [1.0e-3, 2.0e-3, 4.0e-3]}\n",
    )
    sweep, _, base = load_sweep(path)
    study = open_study(sweep, sweep_dir(sweep, base))
    for lr in (1e-3, 2e-3, 4e-3):
        study.enqueue_trial({"train.lr": lr})
    said, t0 = [], time.time()
    run_sweep(path, say=said.append)
    assert time.time() - t0 < 30
    t = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'runs' / 's' / 'study.db'}").trials
    S = optuna.trial.TrialState
    assert [x.state for x in t] == [S.PRUNED, S.FAIL, S.COMPLETE] and t[2].value == 1.5
    assert t[0].user_attrs["stopped"] == t[1].user_attrs["error"] == "ran past budget.trial_timeout_s=1"
    assert list(t[0].intermediate_values.items()) == [(5, 2.0)]
    assert "trial 0: pruned (ran past budget.trial_timeout_s=1)" in said
    assert any(s.startswith("trial 1: failed (ran past budget.trial_timeout_s=1)") for s in said)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.mark.slow
def test_a_real_trial_past_its_limit_is_pruned_at_its_last_evaluation(tmp_path, one_thread):
    """Through the training loop: the signal stops it mid-run, no final model is saved."""
    path = _sweep(
        tmp_path,
        "metric: val_loss\nbudget: {n_trials: 1, trial_timeout_s: 15}\npruner: none\n"
        "space:\n  train.lr: {low: 1.0e-3, high: 1.0e-2, log: true}\n",
        steps=100000,
    )
    said = []
    run_sweep(path, say=said.append)
    folder = tmp_path / "runs" / "s"
    (t,) = optuna.load_study(study_name="s", storage=f"sqlite:///{folder / 'study.db'}").trials
    assert t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values
    assert t.user_attrs["stopped"] == "ran past budget.trial_timeout_s=15"
    steps = [json.loads(x).get("step", 0) for x in (folder / "trial-0" / "metrics.jsonl").read_text().splitlines()]
    assert 5 <= max(steps) < 100000 and not (folder / "trial-0" / "model").exists()


def test_a_trial_is_not_pruned_at_its_last_evaluation(tmp_path, one_thread):
    """Judged worse than the median at its last evaluation, a trial has done its work: it completes."""
    path = _sweep(
        tmp_path,
        "metric: val_loss\nbudget: {n_trials: 2}\npruner: {type: median, startup_trials: 1}\n"
        "space:\n  train.lr: {low: 1.0e-8, high: 1.0e-2, log: true}\n",
        steps=5,  # one evaluation, at step 5: the last
    )
    sweep, _, base = load_sweep(path)
    study = open_study(sweep, sweep_dir(sweep, base))
    study.enqueue_trial({"train.lr": 3e-3})
    study.enqueue_trial({"train.lr": 1e-8})
    run_sweep(path, say=lambda s: None)
    t0, t1 = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'runs' / 's' / 'study.db'}").trials
    assert [t0.state, t1.state] == [optuna.trial.TrialState.COMPLETE] * 2 and t1.value > t0.value
