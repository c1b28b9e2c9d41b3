"""Missing pieces through the real command line: a model folder without its tokenizer, an adapter whose base
is gone, a run saved by another lmforge version, a hub id offline. Each is exit 2 and one line saying what
is missing and what to do; a checkpoint written before manifests still resumes."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest
import yaml
from fuzzing import one_line

from lmforge.cli import main
from tests.conftest import VERSE


def lmforge(*argv) -> tuple[int, str]:
    """``lmforge ARGV`` in this process: its exit code and what it wrote to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def refused(*argv, says: str) -> str:
    code, err = lmforge(*argv)
    assert code == 2 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"lmforge {argv[0]}: error:")]
    assert len(lines) == 1, err
    return one_line(lines[0], (says,))


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "verse.txt").write_text(VERSE * 4)
    rows = [{"instruction": "Say hi", "output": "hi"}, {"instruction": "Say yo", "output": "yo"}] * 4
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return tmp_path


def finetune_config(tmp_path, base) -> str:
    p = tmp_path / "ft.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "name": "ft",
                "out_dir": str(tmp_path / "runs"),
                "log_dir": str(tmp_path / "logs"),
                "model": {"base": str(base)},
                "lora": {"method": "lora", "r": 4},
                "data": {"train": str(tmp_path / "rows.jsonl"), "format": "alpaca"},
                "train": {"max_steps": 2, "batch_size": 2, "report_to": "none"},
            }
        )
    )
    return str(p)


def every_command(tmp_path, model, says: str) -> None:
    """generate, eval and finetune (from it as the base) each refuse ``model`` with the same line."""
    refused("generate", model, "--prompt", "The sea", "--max-new-tokens", "2", says=says)
    refused("eval", model, "--text", tmp_path / "verse.txt", says=says)
    refused("finetune", finetune_config(tmp_path, model), says=says)
    run = tmp_path / "runs" / "ft"  # no output of a run that could not start: nothing to resume or load
    assert not any((run / d).exists() for d in ("checkpoints", "model", "best", "metrics.jsonl"))


def test_a_model_folder_without_its_tokenizer(tmp_path, files, tiny_model_dir):
    # was: "cannot load tokenizer from ...: Couldn't instantiate the backend tokenizer from one of: "
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    for f in model.glob("tokenizer*"):
        f.unlink()
    every_command(tmp_path, model, f"{model}: no tokenizer there")


def test_an_adapter_whose_base_is_gone(tmp_path, files, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = shutil.copytree(tiny_model_dir, tmp_path / "base")
    adapter = tmp_path / "adapter"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(base).save_pretrained(adapter)
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base)
    shutil.rmtree(base)
    # was: "model not found: .../base (no such folder, and not a hub id owner/name)", not saying whose base
    every_command(tmp_path, adapter, f"{adapter}: the adapter's base model {base} is gone")
    for f in adapter.glob("tokenizer*"):  # without its own tokenizer the adapter reads its base's: same line
        f.unlink()
    refused("generate", adapter, "--prompt", "x", says=f"base model {base} is gone")


def test_a_hub_id_offline(tmp_path, files, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    every_command(
        tmp_path, "lmforge-tests/no-such-model", "from the Hugging Face hub (offline, private or misspelled?)"
    )


@pytest.mark.slow
def test_a_run_saved_by_another_version(tmp_path, files, one_thread):
    run = tmp_path / "runs" / "old"
    code, err = lmforge(
        "pretrain",
        tmp_path / "c.yaml" if (tmp_path / "c.yaml").write_text("name: old\n") else None,
        f"data.train={tmp_path / 'verse.txt'}",
        f"out_dir={tmp_path / 'runs'}",
        f"log_dir={tmp_path / 'logs'}",
        "tokenizer.vocab_size=128",
        "model.preset=tiny",
        "model.context=32",
        "train.batch_size=4",
        "train.max_steps=4",
        "train.save_every=2",
        "train.eval_every=2",
        "train.report_to=none",
        "sample.max_new_tokens=2",
    )
    assert code == 0, err
    # a checkpoint from before manifests: resume still reads it
    for manifest in (run / "checkpoints").glob("*/manifest.json"):
        manifest.unlink()
    assert lmforge("resume", run, "train.max_steps=6")[0] == 0
    assert max(json.loads(ln).get("step", 0) for ln in (run / "metrics.jsonl").read_text().splitlines()) == 6

    # a config key this version no longer has: say that the run is from another version, and what to do
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"]["old_knob"] = 3
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    says = "unknown config key 'train.old_knob'"
    line = refused("resume", run, "train.max_steps=8", says=says)
    assert f"saved by another lmforge version: rename or delete that key in {run / 'config.yaml'}" in line
    line = refused("generate", run / "model", "--prompt", "x", "--max-new-tokens", "2", says=says)
    assert "another lmforge version" in line
