"""Experiment trackers through accelerate's tracker API: TensorBoard by default (events in log_dir/<name>,
equal to metrics.jsonl), none, a bad name or a missing package in one line, wandb and MLflow offline."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

from lmforge.cli import main
from lmforge.core.config import load_config
from lmforge.core.errors import LmforgeError
from lmforge.train import logging as run_logging
from lmforge.train.logging import RunLogger, flat_config
from tests.conftest import VERSE


def _run(tmp_path, *extra) -> list[dict]:
    """A 4-step tiny pretrain through the CLI, logged at steps 1, 2, 4, evaluated at 2 and 4; metrics.jsonl rows."""
    corpus = tmp_path / "verse.txt"
    corpus.write_text(VERSE * 40, encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: tr\n")
    code = main(
        [
            "pretrain",
            str(cfg),
            f"data.train={corpus}",
            f"out_dir={tmp_path / 'runs'}",
            f"log_dir={tmp_path / 'logs'}",
            "tokenizer.vocab_size=128",
            "model.preset=tiny",
            "model.context=32",
            "train.batch_size=4",
            "train.max_steps=4",
            "train.warmup_steps=1",
            "train.log_every=2",
            "train.eval_every=2",
            "train.eval_batches=1",
            "train.precision=fp32",
            "sample.max_new_tokens=4",
            *extra,
        ]
    )
    assert code == 0
    path = tmp_path / "runs" / "tr" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _series(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in rows if key in r]


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc


@pytest.mark.slow
def test_default_tensorboard_events_equal_metrics(tmp_path, one_thread):
    rows = _run(tmp_path)
    acc = _events(tmp_path / "logs" / "tr")
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/tokens_per_s", "train/grad_norm", "eval/val_loss"} <= scalars
    for tag, key in (("train/loss", "loss"), ("train/lr", "lr"), ("eval/val_loss", "val_loss")):
        logged = [(e.step, e.value) for e in acc.Scalars(tag)]
        expected = _series(rows, key)
        assert [s for s, _ in logged] == [s for s, _ in expected], tag
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6), tag
    assert [s for s, _ in _series(rows, "loss")] == [1, 2, 4]
    # the resolved config, stored once as hyperparameters (accelerate also writes it as hparams.yml)
    stored = list((tmp_path / "logs" / "tr").glob("*/hparams.yml"))
    assert len(stored) == 1 and "train.max_steps: 4" in stored[0].read_text()


@pytest.mark.slow
def test_report_to_none_writes_no_events(tmp_path, one_thread):
    rows = _run(tmp_path, "train.report_to=none")
    assert _series(rows, "loss")  # metrics.jsonl is always written
    assert not list(tmp_path.rglob("events.out.tfevents.*")) and not (tmp_path / "logs" / "tr").exists()


def test_report_to_accepts_a_string_or_a_list():
    assert load_config(None, []).train.report_to == ["tensorboard"]
    assert load_config(None, ["train.report_to=none"]).train.report_to == []
    assert load_config(None, ["train.report_to=[]"]).train.report_to == []
    assert load_config(None, ["train.report_to=WandB"]).train.report_to == ["wandb"]
    assert load_config(None, ["train.report_to=[tensorboard, mlflow]"]).train.report_to == ["tensorboard", "mlflow"]


def test_unknown_tracker_is_one_line_exit_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmforge.cli",
            "pretrain",
            str(cfg),
            f"out_dir={tmp_path / 'runs'}",
            "train.report_to=[tensorboard, comet]",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.report_to" in lines[0] and "unknown tracker 'comet'" in lines[0], r.stderr


def test_missing_tracker_package_names_the_pip_install(tmp_path, monkeypatch):
    # as on a machine without wandb: accelerate's availability filter drops it
    real = run_logging.filter_trackers
    monkeypatch.setattr(
        run_logging, "filter_trackers", lambda names, d: [t for t in real(names, d) if t.value != "wandb"]
    )
    cfg = load_config(
        None, [f"out_dir={tmp_path / 'runs'}", f"log_dir={tmp_path / 'logs'}", "train.report_to=[tensorboard, wandb]"]
    )
    with pytest.raises(LmforgeError, match=r"^train.report_to: wandb is not installed; pip install wandb") as e:
        RunLogger(cfg)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "logs").exists()  # checked before any tracker starts


def test_text_samples_reach_tensorboard(tmp_path):
    cfg = load_config(None, ["name=txt", f"out_dir={tmp_path / 'runs'}", f"log_dir={tmp_path / 'logs'}"])
    logger = RunLogger(cfg, quiet=True)
    logger.step(1, 2.5, 1e-3, 100, None)
    logger.text(1, "samples/0", "The sea is calm")
    logger.close()
    acc = _events(tmp_path / "logs" / "txt")
    (event,) = acc.Tensors("samples/0/text_summary")  # the tag SummaryWriter.add_text gives
    assert event.step == 1 and event.tensor_proto.string_val[0].decode() == "The sea is calm"


def test_flat_config_is_scalars():
    flat = flat_config(load_config(None, ["data.train=[a.txt]", "train.objective_args={well_formed: true}"]))
    assert flat["train.lr"] == 1e-3 and flat["train.objective_args.well_formed"] is True
    assert json.loads(flat["data.train"])[0]["path"] == "a.txt"
    assert all(v is None or isinstance(v, (str, int, float, bool)) for v in flat.values())


def _wandb_records(path):
    """The records of an offline run's ``run-*.wandb`` file: the block log ``wandb sync`` uploads from
    (a 7-byte file header, 32 KiB blocks, each chunk: crc32, length, kind 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, buf = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


@pytest.mark.slow
def test_wandb_offline_run_writes_local_files(tmp_path, monkeypatch, one_thread):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'lmforge[trackers]')")
    for k, v in {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
    }.items():
        monkeypatch.setenv(k, v)
    for k in ("WANDB_DIR", "WANDB_PROJECT", "WANDB_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    rows = _run(tmp_path, "train.report_to=[tensorboard, wandb]")
    (run,) = (tmp_path / "logs" / "wandb").glob("offline-run-*")
    (log,) = run.glob("run-*.wandb")
    config, history = {}, []
    for r in _wandb_records(log):
        if r.WhichOneof("record_type") == "config":
            config.update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif r.WhichOneof("record_type") == "history":
            # a key with "/" is stored as its parts
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
    assert config["train.max_steps"] == 4 and config["model.preset"] == "tiny"
    for key, tag in (("loss", "train/loss"), ("val_loss", "eval/val_loss")):
        logged = [(h["_step"], h[tag]) for h in history if tag in h]
        assert logged == [(s, pytest.approx(v)) for s, v in _series(rows, key)], tag
    assert _events(tmp_path / "logs" / "tr").Scalars("train/loss")  # TensorBoard beside it


@pytest.mark.slow
def test_mlflow_local_store_holds_the_metrics(tmp_path, monkeypatch, one_thread):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'lmforge[trackers]')")
    from mlflow.tracking import MlflowClient

    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "MLFLOW_TAGS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # restored after the test
    rows = _run(tmp_path, "train.report_to=mlflow")
    store = tmp_path / "logs" / "mlruns"
    assert store.is_dir() and not (tmp_path / "logs" / "tr").exists()  # no TensorBoard: only mlflow asked for
    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    (exp,) = [e for e in client.search_experiments() if e.name == "lmforge"]
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "tr" and run.data.params["train.max_steps"] == "4"
    history = [
        (m.step, m.value)
        for m in sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)
    ]
    expected = _series(rows, "loss")
    assert [s for s, _ in history] == [s for s, _ in expected]
    assert [v for _, v in history] == pytest.approx([v for _, v in expected])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval/val_loss")] == [2, 4]


def test_redirected_output_gets_plain_lines_not_bar_frames(tmp_path, capsys, monkeypatch):
    """Not a terminal (a log file, CI): no carriage-return frames, one plain line per interval."""
    import lmforge.train.logging as run_logging
    from lmforge.cli import main
    from tests.conftest import VERSE

    monkeypatch.setattr(run_logging, "PLAIN_EVERY_S", 0.0)  # every step, so the test sees lines
    text = tmp_path / "v.txt"
    text.write_text(VERSE * 20)
    (tmp_path / "c.yaml").write_text("name: plain\n")
    assert (
        main(
            [
                "pretrain",
                str(tmp_path / "c.yaml"),
                f"data.train={text}",
                f"out_dir={tmp_path}",
                f"log_dir={tmp_path / 'logs'}",
                "model.preset=tiny",
                "model.context=32",
                "tokenizer.vocab_size=128",
                "train.max_steps=3",
                "train.batch_size=2",
                "train.eval_every=100",
                "train.save_every=100",
                "sample.max_new_tokens=2",
                "train.report_to=none",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"] and "tok/s" in lines[0]
