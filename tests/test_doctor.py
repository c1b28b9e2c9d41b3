"""Each doctor check fires on a crafted bad setup and stays silent on a good one; the CLI exits non-zero on errors."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lmforge.cli import main
from lmforge.core.errors import LmforgeError
from lmforge.doctor import CHECKS, check, raise_on_errors

PROMPT = "Le vent se lève, il faut tenter de vivre."
CHAT = {"messages": [{"role": "user", "content": "Bonjour"}, {"role": "assistant", "content": "Salut"}]}
TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from lmforge.model import load_pretrained

    return load_pretrained(tiny_model_dir)


def setattrs(**attrs):
    """A tokenizer change for a case: returns a function that applies it to a fresh copy."""

    def apply(tok):
        for k, v in attrs.items():
            setattr(tok, k, v)
        if "extra" in attrs:
            tok.add_tokens(attrs["extra"])
        return tok

    return apply


# (case id, check, tokenizer change, check() keyword arguments, expected severity); bad setups
BAD = [
    ("pad_is_eos", "pad", setattrs(pad_token="</s>"), {}, "error"),
    ("pad_missing", "pad", setattrs(pad_token=None), {}, "warning"),
    ("pad_missing_train", "pad", setattrs(pad_token=None), {"purpose": "train"}, "error"),
    ("eos_missing", "eos", setattrs(eos_token=None), {}, "error"),
    ("eos_id_mismatch", "eos", None, {"generation": {"eos_token_id": 7}}, "warning"),
    ("special_not_in_vocab", "special_tokens", setattrs(eos_token="<|end|>"), {}, "error"),
    ("vocab_gt_embedding", "vocab_size", setattrs(extra=["<x1>", "<x2>"]), {}, "error"),
    ("unknown_row", "data_rows", None, {"rows": [{"text": "a"}, {"question": "?"}]}, "error"),
    ("no_eos_text", "eos_in_data", None, {"rows": [{"text": "abc"}, {"text": "de"}], "append_eos": False}, "error"),
    (
        "no_eos_completion",
        "eos_in_data",
        None,
        {"rows": [{"prompt": "a", "completion": "b"}], "append_eos": False},
        "error",
    ),
    (
        "some_eos_missing",
        "eos_in_data",
        None,
        {
            "rows": [{"instruction": "a", "input": "", "output": "b</s>"}, {"instruction": "a", "output": "c"}],
            "append_eos": False,
        },
        "warning",
    ),
    ("chat_rows", "chat_template", None, {"rows": [CHAT]}, "error"),
    ("chat_format", "chat_template", None, {"data_format": "chat"}, "error"),
    (
        "sharegpt_rows",
        "chat_template",
        None,
        {"rows": [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}]},
        "error",
    ),
    ("sharegpt_format", "chat_template", None, {"data_format": "sharegpt"}, "error"),
    ("max_length_le_prompt", "max_length", None, {"generation": {"max_length": 5}, "prompts": [PROMPT]}, "error"),
    ("temperature_greedy", "sampling", None, {"generation": {"do_sample": False, "temperature": 0.7}}, "warning"),
    ("temperature_unset_sample", "sampling", None, {"generation": {"temperature": 0.7}}, "warning"),
    ("top_p_greedy", "sampling", None, {"generation": {"do_sample": False, "top_p": 0.9}}, "warning"),
    ("temperature_zero_sample", "sampling", None, {"generation": {"do_sample": True, "temperature": 0}}, "error"),
    ("prompt_too_long", "context", None, {"prompts": [PROMPT * 10]}, "error"),
    ("prompt_plus_new", "context", None, {"prompts": [PROMPT], "generation": {"max_new_tokens": 120}}, "warning"),
    ("row_too_long", "context", None, {"rows": [{"prompt": PROMPT * 10, "completion": "x"}]}, "warning"),
]

# The same checks on setups that are fine: each must stay silent.
GOOD = [
    ("pad_distinct", "pad", None, {"purpose": "train"}),
    ("pad_is_eos_generate", "pad", setattrs(pad_token="</s>"), {"purpose": "generate"}),
    ("eos_ids_agree", "eos", None, {"generation": {"eos_token_id": [2, 9]}}),
    ("specials_in_vocab", "special_tokens", None, {}),
    ("vocab_eq_embedding", "vocab_size", None, {}),
    (
        "known_rows",
        "data_rows",
        None,
        {
            "rows": [
                {"text": "a"},
                CHAT,
                {"prompt": "a", "completion": "b"},
                {"instruction": "i", "input": "", "output": "o"},
            ]
        },
    ),
    ("eos_appended", "eos_in_data", None, {"rows": [{"text": "abc"}], "append_eos": True}),
    (
        "eos_written",
        "eos_in_data",
        None,
        {"rows": [{"text": "abc</s>"}, {"completion": "b</s>\n", "prompt": "a"}], "append_eos": False},
    ),
    ("chat_with_template", "chat_template", setattrs(chat_template=TEMPLATE), {"rows": [CHAT]}),
    ("no_chat", "chat_template", None, {"rows": [{"text": "a"}], "data_format": "text"}),
    (
        "max_new_tokens_wins",
        "max_length",
        None,
        {"generation": {"max_length": 5, "max_new_tokens": 9}, "prompts": [PROMPT]},
    ),
    ("max_length_room", "max_length", None, {"generation": {"max_length": 100}, "prompts": [PROMPT]}),
    ("sampling_on", "sampling", None, {"generation": {"do_sample": True, "temperature": 0.7, "top_p": 0.9}}),
    ("greedy_plain", "sampling", None, {"generation": {"do_sample": False, "temperature": 1.0}}),
    ("greedy_temperature_zero", "sampling", None, {"generation": {"temperature": 0}}),
    (
        "prompt_fits",
        "context",
        None,
        {"prompts": [PROMPT], "generation": {"max_new_tokens": 20}, "rows": [{"text": PROMPT * 10}]},
    ),
]


@pytest.mark.parametrize("case,name,change,kwargs,severity", BAD, ids=[c[0] for c in BAD])
def test_check_fires_on_bad_setup(case, name, change, kwargs, severity, tiny_tokenizer, model):
    tok = (change or (lambda t: t))(copy.deepcopy(tiny_tokenizer))
    found = check(model=model, tokenizer=tok, only=[name], **kwargs)
    assert [f.severity for f in found] == [severity], found
    assert found[0].check == name and found[0].message and found[0].fix


@pytest.mark.parametrize("case,name,change,kwargs", GOOD, ids=[c[0] for c in GOOD])
def test_check_silent_on_good_setup(case, name, change, kwargs, tiny_tokenizer, model):
    tok = (change or (lambda t: t))(copy.deepcopy(tiny_tokenizer))
    assert check(model=model, tokenizer=tok, only=[name], **kwargs) == []


def test_every_check_is_covered_both_ways():
    assert {c[1] for c in BAD} == set(CHECKS.names())
    assert {c[1] for c in GOOD} == set(CHECKS.names())


def test_good_setup_has_no_findings_at_all(tiny_tokenizer, model):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = TEMPLATE
    rows = [{"text": "abc</s>"}, CHAT, {"prompt": "a", "completion": "b</s>"}]
    gen = {"do_sample": True, "temperature": 0.8, "max_new_tokens": 32, "eos_token_id": tok.eos_token_id}
    assert check(model, tok, generation=gen, prompts=[PROMPT], rows=rows, append_eos=False, purpose="train") == []


def test_row_messages_name_file_and_line(tmp_path, tiny_tokenizer):
    from lmforge.doctor.inputs import load_rows

    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a</s>"}\n\n{"question": "?"}\n', encoding="utf-8")
    rows, where = load_rows(p)
    found = check(tokenizer=tiny_tokenizer, rows=rows, where=where, only=["data_rows"])
    assert found[0].message.startswith(f"{p}:3:")
    p.write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(LmforgeError, match=r"d\.jsonl:2: not valid JSON"):
        load_rows(p)


def test_doctor_errors_are_real_failures(tiny_tokenizer, model):
    """Parity with Hugging Face: what the doctor calls an error, ``generate`` really refuses."""
    ids = tiny_tokenizer(PROMPT, return_tensors="pt").input_ids
    for gen in ({"do_sample": True, "temperature": 0.0, "max_new_tokens": 3}, {"max_length": ids.shape[1]}):
        assert [f.severity for f in check(model, tiny_tokenizer, generation=gen, prompts=[PROMPT])] == ["error"]
        with pytest.raises(ValueError):
            model.generate(ids, **gen)


def test_raise_on_errors_uses_the_first_error_message(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.pad_token = tok.eos_token
    raise_on_errors(check(tokenizer=tiny_tokenizer, generation={"temperature": 0.5}))  # a warning only: passes
    findings = check(tokenizer=tok, generation={"do_sample": True, "temperature": 0})
    with pytest.raises(LmforgeError) as e:
        raise_on_errors(findings)
    assert str(e.value) == f"{findings[0].message}; fix: {findings[0].fix}"


@pytest.fixture
def pad_eos_dir(tmp_path, tiny_model_dir):
    """The tiny model saved with a tokenizer whose PAD is its EOS."""
    from lmforge.model import load_tokenizer

    out = tmp_path / "pad_eos"
    shutil.copytree(tiny_model_dir, out)
    tok = load_tokenizer(out)
    tok.pad_token = tok.eos_token
    tok.save_pretrained(out)
    return out


def test_cli_reports_pad_equal_eos_and_fails(pad_eos_dir, tiny_model_dir, capsys):
    assert main(["doctor", str(pad_eos_dir)]) == 1
    out = capsys.readouterr().out
    assert "PAD is the same token as EOS" in out and "fix: add a distinct PAD" in out
    assert main(["doctor", str(tiny_model_dir)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_cli_reads_data_and_configs(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "chat.json"
    data.write_text(json.dumps([CHAT]), encoding="utf-8")
    gen = tmp_path / "generation_config.json"
    gen.write_text(json.dumps({"do_sample": True, "temperature": 0}), encoding="utf-8")
    assert main(["doctor", str(tiny_model_dir), "--data", str(data), "--config", str(gen), "--json"]) == 1
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(f["check"], f["severity"]) for f in found} == {("chat_template", "error"), ("sampling", "error")}
    assert found[0]["message"].startswith(f"{data}:1 (row 0):")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("data:\n  format: chat\nsample:\n  temperature: 0\n", encoding="utf-8")
    assert main(["doctor", str(tiny_model_dir), "--config", str(cfg)]) == 1
    assert "data.format=chat: chat-formatted data" in capsys.readouterr().out
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a"}\n{"question": "b"}\n', encoding="utf-8")
    cfg.write_text(f"data:\n  train: {rows}\n", encoding="utf-8")  # the config's own data is read and checked
    assert main(["doctor", str(tiny_model_dir), "--config", str(cfg)]) == 1
    assert f"{rows}:2: row has keys ['question']" in capsys.readouterr().out
    cfg.write_text("data:\n  formt: chat\n", encoding="utf-8")
    assert main(["doctor", str(tiny_model_dir), "--config", str(cfg)]) == 2  # a bad config is a usage error
    assert "did you mean 'data.format'" in capsys.readouterr().err


def test_subprocess_doctor_exit_code(pad_eos_dir):
    exe = Path(sys.executable).with_name("lmforge")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lmforge.cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(cmd + ["doctor", str(pad_eos_dir)], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "error    pad" in res.stdout and "PAD is the same token as EOS" in res.stdout


def test_tokenizer_only_folder(tmp_path, tiny_tokenizer, capsys):
    tiny_tokenizer.save_pretrained(tmp_path)
    assert main(["doctor", str(tmp_path)]) == 0
    assert "holds no model: checked the tokenizer only" in capsys.readouterr().out
