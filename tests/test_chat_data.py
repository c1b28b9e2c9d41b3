"""Chat fine-tuning data: every assistant turn trained, masks from the template, ShareGPT, named templates."""

from __future__ import annotations

import copy
import json

import pytest

from lmforge.core.config import DataConfig
from lmforge.core.errors import LmforgeError
from lmforge.data.chat import TEMPLATES, conversation, prepare_tokenizer, stop_ids
from lmforge.data.examples import IGNORE, assemble_chat, load_examples
from lmforge.data.formats import ALPACA_NO_INPUT

SYSTEM = "Be brief."
TURNS = [("Name a sea.", "The North Sea."), ("Another one?", "The calm sea."), ("And a poet?", "Verlaine.")]
MESSAGES = [{"role": "system", "content": SYSTEM}] + [
    m for q, a in TURNS for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})
]
SHAREGPT = {
    "conversations": [{"from": "system", "value": SYSTEM}]
    + [t for q, a in TURNS for t in ({"from": "human", "value": q}, {"from": "gpt", "value": a})]
}
END = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>", "zephyr": "</s>", "alpaca": "</s>"}


def error(fn, *args, **kw) -> str:
    with pytest.raises(LmforgeError) as info:
        fn(*args, **kw)
    assert "\n" not in str(info.value)
    return str(info.value)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def chat_cfg(path, **kw) -> DataConfig:
    return DataConfig(**{"train": [path], "format": "chat", "val_fraction": 0.0, **kw})


def prepared(tokenizer, cfg):
    tok = copy.deepcopy(tokenizer)
    prepare_tokenizer(tok, cfg)
    return tok


def one_example(tmp_path, tokenizer, rows=None, max_len=512, **kw):
    path = write_jsonl(tmp_path / "chat.jsonl", rows or [{"messages": MESSAGES}])
    cfg = chat_cfg(path, **kw)
    tok = prepared(tokenizer, cfg)
    train, _ = load_examples(cfg, tok, max_len, seed=0)
    assert len(train) == len(rows or [1])
    return train[0], tok


def trained(ex) -> list[int]:
    return [t for t, label in zip(ex["input_ids"], ex["labels"]) if label != IGNORE]


def by_hand(tok, name, replies) -> list[int]:
    """Each reply tokenized alone, then its end token: what the model must learn to write."""
    end = tok.convert_tokens_to_ids(END[name])
    return [t for r in replies for t in tok(r, add_special_tokens=False)["input_ids"] + [end]]


# ---------------------------------------------------------------- masks by hand


@pytest.mark.parametrize("name", ["chatml", "llama3", "zephyr", "alpaca"])
def test_every_assistant_turn_is_trained_and_nothing_else(tmp_path, tiny_tokenizer, name):
    ex, tok = one_example(tmp_path, tiny_tokenizer, chat_template=name)
    expected = by_hand(tok, name, [a for _, a in TURNS])
    assert trained(ex) == expected
    assert sum(label != IGNORE for label in ex["labels"]) == len(expected)
    # three runs of targets, each ending with the end-of-turn token; the tokens are the template's own
    assert len(ex["spans"]) == 3
    full = tok.apply_chat_template(MESSAGES, tokenize=False, chat_template=TEMPLATES[name])
    ids = tok(full, add_special_tokens=False)["input_ids"]
    assert ex["input_ids"] == ([] if ids[0] == tok.bos_token_id else [tok.bos_token_id]) + ids  # BOS once
    assert ex["input_ids"].count(tok.bos_token_id) == 1
    for s, e in ex["spans"]:
        assert ex["labels"][s - 1] == IGNORE and ex["input_ids"][e - 1] == tok.convert_tokens_to_ids(END[name])
    assert ex["row"] == {"messages": MESSAGES} and ex["completion"] == "Verlaine." + END[name]


def test_last_turn_only(tmp_path, tiny_tokenizer):
    ex, tok = one_example(tmp_path, tiny_tokenizer, chat_template="chatml", assistant_turns="last")
    assert trained(ex) == by_hand(tok, "chatml", ["Verlaine."])
    everything, _ = one_example(tmp_path, tiny_tokenizer, chat_template="chatml")
    assert everything["input_ids"] == ex["input_ids"]  # the same tokens, fewer targets


def test_assistant_header_is_context(tmp_path, tiny_tokenizer):
    ex, tok = one_example(tmp_path, tiny_tokenizer, chat_template="chatml")
    header = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    for s, _ in ex["spans"]:
        assert ex["input_ids"][s - len(header) : s] == header
        assert ex["labels"][s - len(header) : s] == [IGNORE] * len(header)


def test_template_without_generation_markers_is_split_by_prefixes(tmp_path, tiny_tokenizer):
    # a tokenizer's own template that ends each turn with EOS and has no {% generation %}
    own = (
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = own
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": MESSAGES}])
    train, _ = load_examples(chat_cfg(path), tok, 512, seed=0)
    assert trained(train[0]) == by_hand(tok, "zephyr", [a for _, a in TURNS])
    assert train[0]["input_ids"][0] == tok.bos_token_id and train[0]["input_ids"].count(tok.bos_token_id) == 1


def test_a_template_that_renders_history_differently_is_an_error(tmp_path, tiny_tokenizer):
    changing = "{% for m in messages %}{{ m['content'] }}{% if loop.last %}!{% endif %}\n{% endfor %}"
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": MESSAGES}])
    msg = error(load_examples, chat_cfg(path, chat_template=changing), tiny_tokenizer, 512, 0)
    assert msg.startswith(f"{path}:1: the chat template renders turn 3 differently") and "generation" in msg


# ---------------------------------------------------------------- ShareGPT


@pytest.mark.parametrize("fmt", ["chat", "sharegpt"])
def test_sharegpt_gives_the_same_tokens_as_messages(tmp_path, tiny_tokenizer, fmt):
    messages, tok = one_example(tmp_path, tiny_tokenizer, chat_template="llama3")
    path = write_jsonl(tmp_path / "sharegpt.jsonl", [SHAREGPT])
    train, _ = load_examples(chat_cfg(path, format=fmt, chat_template="llama3"), tok, 512, seed=0)
    assert train[0]["input_ids"] == messages["input_ids"] and train[0]["labels"] == messages["labels"]


def test_sharegpt_roles_and_system_column():
    rows = {
        "system": "Be brief.",
        "conversations": [
            {"from": "human", "value": "a"},
            {"from": "function_call", "value": "{}"},
            {"from": "observation", "value": "b"},
            {"from": "chatgpt", "value": "c"},
        ],
    }
    assert [m["role"] for m in conversation(rows)] == ["system", "user", "assistant", "tool", "assistant"]
    assert conversation({"conversations": json.dumps(SHAREGPT["conversations"])}) == MESSAGES  # CSV cells


def test_unknown_role_and_no_assistant_name_file_line(tmp_path, tiny_tokenizer):
    bad = {"conversations": [{"from": "human", "value": "a"}, {"from": "robot", "value": "b"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", [SHAREGPT, bad])
    cfg = chat_cfg(path, chat_template="chatml")
    msg = error(load_examples, cfg, prepared(tiny_tokenizer, cfg), 512, 0)
    assert msg.startswith(f"{path}:2: conversations[1]: unknown role 'robot'") and "human" in msg and "gpt" in msg
    mute = {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]}
    path = write_jsonl(tmp_path / "mute.jsonl", [{"messages": MESSAGES}, {"messages": MESSAGES}, mute])
    msg = error(load_examples, chat_cfg(path, chat_template="chatml"), prepared(tiny_tokenizer, cfg), 512, 0)
    assert msg.startswith(f"{path}:3: column 'messages' has no assistant turn")


# ---------------------------------------------------------------- named templates


def test_unknown_template_name_lists_the_names(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": MESSAGES}])
    msg = error(load_examples, chat_cfg(path, chat_template="llama-3"), tiny_tokenizer, 512, 0)
    assert "unknown chat template 'llama-3'; did you mean 'llama3'?" in msg
    for name in ("tokenizer", "chatml", "llama3", "zephyr", "alpaca"):
        assert name in msg


def test_template_key_takes_a_name_for_chat_data(tmp_path, tiny_tokenizer):
    by_template, _ = one_example(tmp_path, tiny_tokenizer, template="llama3")  # LLaMA-Factory's key
    by_chat_template, _ = one_example(tmp_path, tiny_tokenizer, chat_template="llama3")
    assert by_template["input_ids"] == by_chat_template["input_ids"]


def test_named_templates_render_the_published_formats(tiny_tokenizer):
    two = MESSAGES[:3]

    def render(name, messages=two, **kw):
        return tiny_tokenizer.apply_chat_template(messages, tokenize=False, chat_template=TEMPLATES[name], **kw)

    assert render("chatml") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a sea.<|im_end|>\n"
        "<|im_start|>assistant\nThe North Sea.<|im_end|>\n"
    )
    assert render("chatml", two[:2], add_generation_prompt=True).endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert render("llama3") == (
        "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nName a sea.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nThe North Sea.<|eot_id|>"
    )
    assert render("zephyr") == (
        "<|system|>\nBe brief.</s>\n<|user|>\nName a sea.</s>\n<|assistant|>\nThe North Sea.</s>\n"
    )
    assert render("zephyr", two[:2], add_generation_prompt=True).endswith("</s>\n<|assistant|>\n")
    # one alpaca turn is the Stanford prompt, as data.format=alpaca writes it
    stanford = ALPACA_NO_INPUT.format(instruction="Name a sea.")
    assert render("alpaca", two[1:]) == "<s>" + stanford + "The North Sea.</s>\n\n"


def test_prepare_tokenizer_adds_the_markers_once(tmp_path, tiny_tokenizer):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": MESSAGES}])
    cfg = chat_cfg(path, chat_template="chatml")
    msg = error(load_examples, cfg, tiny_tokenizer, 512, 0)  # never grown behind the caller's back
    assert "<|im_start|>, <|im_end|>" in msg and "prepare_tokenizer" in msg
    tok = copy.deepcopy(tiny_tokenizer)
    n = len(tok)
    assert prepare_tokenizer(tok, cfg) and len(tok) == n + 2 and tok.chat_template == TEMPLATES["chatml"]
    assert not prepare_tokenizer(tok, cfg) and len(tok) == n + 2
    assert not prepare_tokenizer(copy.deepcopy(tiny_tokenizer), DataConfig(format="alpaca", train=[path]))
    assert len(tok("<|im_start|>", add_special_tokens=False)["input_ids"]) == 1
    assert stop_ids(tok) == [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]
    assert stop_ids(tiny_tokenizer) == [tiny_tokenizer.eos_token_id]


# ---------------------------------------------------------------- truncation


def test_truncation_cuts_from_the_right_and_never_keeps_a_half_turns_end():
    ids = list(range(100, 120))
    spans = [(3, 7), (10, 15), (17, 20)]
    ex = assemble_chat(ids, spans, max_len=12)
    assert ex["input_ids"] == ids[:12] and ex["spans"] == [(3, 7), (10, 12)] and ex["length"] == 20
    assert [i for i, label in enumerate(ex["labels"]) if label != IGNORE] == [3, 4, 5, 6, 10, 11]
    whole = assemble_chat(ids, spans, max_len=20)
    assert whole["spans"] == spans and sum(label != IGNORE for label in whole["labels"]) == 4 + 5 + 3
    assert assemble_chat(ids, spans, max_len=3)["spans"] == []
    everything = assemble_chat(ids, spans, max_len=20, completion_only=False)
    assert everything["labels"] == [IGNORE] + ids[1:]


def test_a_cut_conversation_keeps_whole_turns_and_drops_rows_past_the_context(tmp_path, tiny_tokenizer, caplog):
    whole, tok = one_example(tmp_path, tiny_tokenizer, chat_template="chatml")
    end = tok.convert_tokens_to_ids("<|im_end|>")
    last_start = whole["spans"][-1][0]
    long_system = [{"role": "system", "content": "Le vent se lève. " * 40}] + MESSAGES[1:]
    rows = [{"messages": MESSAGES}, {"messages": long_system}]
    path = write_jsonl(tmp_path / "two.jsonl", rows)
    train, _ = load_examples(chat_cfg(path, chat_template="chatml"), tok, last_start + 2, seed=0)
    assert len(train) == 1 and "1 conversations dropped" in caplog.text  # the long one teaches nothing
    ex = train[0]
    assert ex["row"] == rows[0] and ex["input_ids"] == whole["input_ids"][: last_start + 2]
    assert ex["spans"] == whole["spans"][:2] + [(last_start, last_start + 2)]
    assert [ex["input_ids"][e - 1] for _, e in ex["spans"][:2]] == [end, end]  # whole turns keep their end
    assert end not in trained(ex)[-2:] and trained(ex) == trained(whole)[: len(trained(ex))]


# ---------------------------------------------------------------- the other formats are as they were


@pytest.mark.parametrize(
    "fmt,row,prompt,completion",
    [
        ("alpaca", {"instruction": "Add.", "output": "5"}, ALPACA_NO_INPUT.format(instruction="Add."), "5"),
        ("prompt_completion", {"prompt": "Q: a\nA: ", "completion": "b"}, "Q: a\nA: ", "b"),
        ("template", {"input": "q", "output": "[]"}, '### Question: "q"\n ### Answer: ', "[]"),
        ("text", {"text": "Le vent se lève."}, "", "Le vent se lève."),
    ],
)
def test_other_formats_keep_their_examples(tmp_path, tiny_tokenizer, fmt, row, prompt, completion):
    tok = tiny_tokenizer
    path = write_jsonl(tmp_path / "rows.jsonl", [row])
    template = '### Question: "{input}"\\n ### Answer: {output}'
    cfg = DataConfig(train=[path], format=fmt, val_fraction=0.0, template=template)
    (ex,), _ = load_examples(cfg, tok, 512, seed=0)
    p = [tok.bos_token_id] + (tok(prompt, add_special_tokens=False)["input_ids"] if prompt else [])
    c = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ex == {
        "input_ids": p + c,
        "labels": [IGNORE] * len(p) + c,
        "prompt": prompt,
        "completion": completion,
        "row": row,
    }
