"""lmforge generate prompts a fine-tuned run the way it was trained: wrapped in the run's format by default."""

from __future__ import annotations

import json

import pytest

from lmforge.core.config import DataConfig, load_config
from lmforge.core.errors import LmforgeError
from lmforge.generate.prompting import chat, run_format, wrap


@pytest.fixture(scope="module")
def alpaca_run(tmp_path_factory, tiny_model_dir):
    from lmforge.train.run import finetune

    tmp = tmp_path_factory.mktemp("alpaca")
    rows = [{"instruction": f"Say {w}.", "input": "", "output": w} for w in ("yes", "no", "maybe", "never")]
    (tmp / "a.json").write_text(json.dumps(rows))
    cfg = load_config(
        None,
        [
            f"out_dir={tmp}",
            "name=a",
            f"log_dir={tmp / 'logs'}",
            f"model.base={tiny_model_dir}",
            f"data.train={tmp / 'a.json'}",
            "data.format=alpaca",
            "data.val_fraction=0",
            "train.max_steps=2",
            "train.batch_size=2",
            "train.precision=fp32",
            "train.eval_every=100",
            "train.save_every=100",
            "sample.max_new_tokens=2",
        ],
    )
    return finetune(cfg, quiet=True)


def test_the_runs_format_is_found_from_the_run_its_model_and_a_checkpoint(alpaca_run, tiny_model_dir):
    for path in (alpaca_run, alpaca_run / "model", *(alpaca_run / "checkpoints").glob("step-*/model")):
        assert run_format(path).format == "alpaca", path
    assert run_format(tiny_model_dir) is None  # not a run: prompts go as typed


def test_wrap_by_format_by_hand(tiny_tokenizer):
    alpaca = wrap("Name a colour.", DataConfig(format="alpaca"), tiny_tokenizer)
    assert alpaca.startswith("Below is an instruction") and alpaca.endswith(
        "### Instruction:\nName a colour.\n\n### Response:\n"
    )
    tpl = DataConfig(format="template", template='### Question: "{input}"\\n ### Answer: {output}')
    assert wrap("Canto II?", tpl, tiny_tokenizer) == '### Question: "Canto II?"\n ### Answer: '
    assert wrap("as is", DataConfig(format="prompt_completion"), tiny_tokenizer) == "as is"


def test_chat_needs_a_template(tiny_tokenizer):
    import copy

    with pytest.raises(LmforgeError, match="no chat template"):
        chat("hi", tiny_tokenizer)
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    assert chat("hi", tok) == "<user>hi<assistant>"


def test_generate_wraps_by_default_and_raw_does_not(alpaca_run, capsys):
    from lmforge.cli import main

    base = ["generate", str(alpaca_run), "--prompt", "Say yes.", "--temperature", "0", "--max-new-tokens", "3"]
    assert main(base) == 0
    out = capsys.readouterr()
    assert "### Instruction:\nSay yes." in out.out and "training format (alpaca)" in out.err
    assert main([*base, "--raw"]) == 0
    out = capsys.readouterr()
    assert "### Instruction" not in out.out and out.out.startswith("Say yes.")
