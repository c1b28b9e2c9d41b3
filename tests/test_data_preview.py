"""``lmforge data preview``: the examples as training builds them, trained tokens marked, cuts and packing."""

from __future__ import annotations

import json

import pytest

from lmforge.cli import main
from lmforge.core.config import load_config
from lmforge.data.preview import GREEN, first_fit_blocks, padded_fill, preview_data, render_text

# characters the tiny tokenizer knows (no <unk> in the decoded text)
CONVERSATION = [
    {"from": "system", "value": "Sois bref."},
    {"from": "human", "value": "The sea?"},
    {"from": "gpt", "value": "The sea is calm tonight."},
    {"from": "human", "value": "And the tide?"},
    {"from": "gpt", "value": "The tide is full."},
]


@pytest.fixture()
def chat_config(tmp_path, tiny_model_dir):
    rows = [{"conversations": CONVERSATION}] + [
        {"conversations": [{"from": "human", "value": f"Vivre {i}?"}, {"from": "gpt", "value": "Le vent " * i}]}
        for i in range(1, 12)
    ]
    data = tmp_path / "chat.json"
    data.write_text(json.dumps(rows), encoding="utf-8")
    cfg = tmp_path / "chat.yaml"
    cfg.write_text(
        f"model:\n  base: {tiny_model_dir}\n  context: 128\n"
        f"data:\n  train: {data}\n  format: sharegpt\n  chat_template: chatml\n  val_fraction: 0.1\n"
        "train:\n  batch_size: 4\n",
        encoding="utf-8",
    )
    return cfg


def test_preview_marks_trained_tokens_and_counts(chat_config, tmp_path, capsys):
    html = tmp_path / "out" / "preview.html"
    assert main(["data", "preview", str(chat_config), "--rows", "2", "--html", str(html)]) == 0
    out = capsys.readouterr().out
    # not a terminal: trained tokens in brackets, each answer with its end token, headers outside
    assert "<|im_start|>assistant\n[[The sea is calm tonight.<|im_end|>]]\n<|im_start|>user\n" in out
    assert "[[The tide is full.<|im_end|>]]" in out and "[[Sois" not in out and "[[The sea?" not in out
    assert "--- example 1:" in out and "--- example 2:" in out and "--- example 3:" not in out
    assert "chat template chatml" in out
    assert "examples: 11 train, 1 validation" in out
    assert "context 128 cuts 0 of 11 train and 0 of 1 validation examples" in out
    assert "padding: batches of 4 (grouped by length)" in out
    assert "packing: first-fit into blocks of 128 would fill" in out
    assert "note: the tokenizer grows" in out  # <|im_start|> and <|im_end|> were added
    page = html.read_text(encoding="utf-8")
    assert '<span class="trained">The sea is calm tonight.&lt;|im_end|&gt;</span>' in page
    assert "&lt;|im_start|&gt;" in page and "<|im_start|>" not in page  # the data is escaped
    assert f"wrote {html}" in out


def test_preview_counts_the_rows_the_context_cuts(chat_config, capsys):
    assert main(["data", "preview", str(chat_config), "model.context=32", "--rows", "0"]) == 0
    out = capsys.readouterr().out
    assert "--- example" not in out
    cut = [line for line in out.splitlines() if line.startswith("context 32 cuts")][0]
    assert not cut.startswith("context 32 cuts 0 of")


def test_preview_of_alpaca_rows_without_a_chat_template(tmp_path, tiny_model_dir, capsys):
    data = tmp_path / "a.jsonl"
    data.write_text(json.dumps({"instruction": "Add.", "output": "5"}) + "\n", encoding="utf-8")
    cfg = tmp_path / "a.yaml"
    cfg.write_text(
        f"model:\n  base: {tiny_model_dir}\ndata:\n  train: {data}\n  format: alpaca\n  val_fraction: 0\n",
        encoding="utf-8",
    )
    assert main(["data", "preview", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "esponse:\n[[5</s>]]" in out and "chat template" not in out  # "#" and "R" are <unk> here
    assert "padding: batches of 16" in out and "would fill" in out


def test_preview_errors_are_one_line(tmp_path, capsys):
    cfg = tmp_path / "no_model.yaml"
    cfg.write_text("data:\n  train: x.jsonl\n  format: chat\n", encoding="utf-8")
    assert main(["data", "preview", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "lmforge data: error: data preview needs a tokenizer: set model.base (or tokenizer.path)"


def test_first_fit_blocks_by_hand():
    # longest first, each into the first block with room: [6, 4] [5, 3, 2]
    assert first_fit_blocks([2, 5, 6, 3, 4], 10) == 2
    assert first_fit_blocks([7, 7, 7], 10) == 3
    assert first_fit_blocks([10] * 4 + [0], 10) == 4
    assert first_fit_blocks([], 10) == 0
    assert first_fit_blocks([1] * 100, 10) == 10
    with pytest.raises(ValueError):
        first_fit_blocks([11], 10)


def test_padded_fill_by_hand():
    examples = [{"input_ids": [1] * n, "labels": [1] * n} for n in (2, 4, 2, 4)]
    # grouped by length: (2, 2) and (4, 4) fill their batches; in a random order some batch pads
    assert padded_fill(examples, 2, 1, seed=0, pad_id=0, group_by_length=True) == 1.0
    assert padded_fill(examples, 4, 1, seed=0, pad_id=0, group_by_length=False) == 12 / 16


def test_terminal_colours(chat_config):
    p = preview_data(load_config(str(chat_config), []), rows=1)
    text = render_text(p, colour=True)
    assert f"{GREEN}The sea is calm tonight.<|im_end|>" in text and "[[" not in text
    assert p.n_train == 11 and p.context == 128 and 0 < p.packed_fill <= 1 and 0 < p.padded_fill <= 1
