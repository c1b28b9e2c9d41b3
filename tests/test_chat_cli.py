"""``lmforge chat``: the chat template, streamed replies, and /commands, through the real CLI."""

from __future__ import annotations

import io

import pytest
from serve_helpers import chat_model_dir


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory, tiny_model_dir):
    return chat_model_dir(tmp_path_factory.mktemp("chat_cli_model"), tiny_model_dir)


def _greedy(folder, messages, n=12) -> str:
    from lmforge.generate import GenerationSettings, generate
    from lmforge.model import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(str(folder), device="cpu")
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return generate(model, tok, [prompt], GenerationSettings(max_new_tokens=n, temperature=0))[0]


def test_chat_turns_reset_and_commands(chat_model, monkeypatch, capsys, one_thread):
    from lmforge.cli import main

    lines = ["/temp 0", "Le vent", "Et la mer", "/reset", "Le vent", "/temp hot", "/nope", "/quit", "never read"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["chat", str(chat_model), "--device", "cpu", "--max-tokens", "12", "--temperature", "0.9"]) == 0
    out = capsys.readouterr().out
    first = _greedy(chat_model, [{"role": "user", "content": "Le vent"}])
    second = _greedy(
        chat_model,
        [
            {"role": "user", "content": "Le vent"},
            {"role": "assistant", "content": first},
            {"role": "user", "content": "Et la mer"},
        ],
    )
    want = (
        "[temp = 0]\n"
        f"{first}\n{second}\n"
        "[conversation reset]\n"
        f"{first}\n"  # after /reset the same question gets the first answer again: the history is gone
        "/temp: bad value 'hot' (see /help)\n"
        "unknown command /nope (see /help)\n"
    )
    assert first and out == want


def test_chat_without_a_template_is_one_line(tiny_model_dir, monkeypatch, capsys):
    from lmforge.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n"))
    assert main(["chat", str(tiny_model_dir), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.splitlines()[-1].startswith("lmforge chat: error: ")
    assert "no chat template" in err.splitlines()[-1]
