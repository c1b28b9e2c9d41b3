"""A chat fine-tune end to end: ShareGPT rows, a named template, the saved tokenizer keeps it, generate uses it."""

from __future__ import annotations

import json


def test_sharegpt_chatml_finetune_then_generate(tmp_path, tiny_model_dir, capsys):
    from lmforge.cli import main
    from lmforge.model import load_tokenizer

    rows = [
        {
            "conversations": [
                {"from": "human", "value": f"Say {w}."},
                {"from": "gpt", "value": w},
                {"from": "human", "value": "Again."},
                {"from": "gpt", "value": w},
            ]
        }
        for w in ("yes", "no", "maybe", "never", "soon", "later")
    ]
    data = tmp_path / "chat.json"
    data.write_text(json.dumps(rows))
    cfg = tmp_path / "chat.yaml"
    cfg.write_text(
        f"name: chat\nmodel: {{base: {tiny_model_dir}}}\n"
        f"data: {{train: {data}, format: sharegpt, chat_template: chatml, val_fraction: 0.2}}\n"
    )
    common = [
        f"out_dir={tmp_path}",
        f"log_dir={tmp_path / 'logs'}",
        "train.max_steps=12",
        "train.batch_size=2",
        "train.lr=1e-2",
        "train.warmup_steps=0",
        "train.precision=fp32",
        "train.eval_every=6",
        "train.save_every=100",
        "sample.max_new_tokens=2",
        "train.report_to=none",
    ]
    assert main(["finetune", str(cfg), *common]) == 0
    tok = load_tokenizer(tmp_path / "chat" / "model")
    assert "<|im_start|>" in tok.chat_template and "<|im_end|>" in tok.get_vocab()
    capsys.readouterr()
    assert (
        main(
            ["generate", str(tmp_path / "chat"), "--prompt", "Say yes.", "--temperature", "0", "--max-new-tokens", "4"]
        )
        == 0
    )
    out = capsys.readouterr()
    assert "<|im_start|>user\nSay yes.<|im_end|>\n<|im_start|>assistant\n" in out.out
    assert "training format (sharegpt)" in out.err
