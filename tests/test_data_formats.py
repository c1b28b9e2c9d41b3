"""Formats, completion-only labels with EOS, truncation, mixtures and splits."""

from __future__ import annotations

import copy
import json
from collections import Counter

import pytest

from lmforge.core.config import DataConfig
from lmforge.core.errors import LmforgeError
from lmforge.core.registry import FORMATS
from lmforge.data.examples import (
    IGNORE,
    assemble,
    encode_prompt,
    load_examples,
    split_indices,
    tokenize_example,
    weighted,
)
from lmforge.data.formats import ALPACA_NO_INPUT, ALPACA_WITH_INPUT, render

SEED_TEMPLATE = '### Question: "{input}"\n ### Answer: {output}'
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a sea."},
    {"role": "assistant", "content": "The North Sea."},
]


def fmt(name, row, **kw):
    return render(name, row, "rows.jsonl:7", **kw)


def error(fn, *args, **kw) -> str:
    with pytest.raises(LmforgeError) as info:
        fn(*args, **kw)
    assert "\n" not in str(info.value)
    return str(info.value)


# ---------------------------------------------------------------- formats


def test_builtin_formats_are_registered():
    assert {"text", "alpaca", "chat", "prompt_completion", "template"} <= set(FORMATS.names())


def test_alpaca_with_and_without_input():
    row = {"instruction": "Add.", "input": "2 and 3", "output": "5"}
    prompt, completion = fmt("alpaca", row)
    assert prompt == ALPACA_WITH_INPUT.format(instruction="Add.", input="2 and 3") and completion == "5"
    assert prompt.endswith("### Input:\n2 and 3\n\n### Response:\n")
    for no_input in (
        {"instruction": "Hi.", "input": "", "output": "Hello."},
        {"instruction": "Hi.", "output": "Hello."},
    ):
        prompt, completion = fmt("alpaca", no_input)
        assert prompt == ALPACA_NO_INPUT.format(instruction="Hi.") and "### Input" not in prompt


def test_seed_template_renders_exactly():
    row = {"input": "q", "output": '{"references": []}'}
    expected = ('### Question: "q"\n ### Answer: ', '{"references": []}')
    assert fmt("template", row, template=SEED_TEMPLATE) == expected
    # the same template typed in YAML single quotes (a backslash and an n) means the same
    assert fmt("template", row, template=SEED_TEMPLATE.replace("\n", "\\n")) == expected


def test_template_completion_is_last_placeholder_and_after():
    row = {"q": "2+2", "a": 4, "refs": {"canto": 1}}
    assert fmt("template", row, template="Q: {q} {{literal}}\nA: {a}.\n") == ("Q: 2+2 {literal}\nA: ", "4.\n")
    # objects are written as JSON, not as Python reprs
    assert fmt("template", row, template="{q} => {refs}") == ("2+2 => ", '{"canto": 1}')


def test_template_errors_name_file_line_and_column():
    assert error(fmt, "template", {"input": "q"}, template=SEED_TEMPLATE).startswith(
        "rows.jsonl:7: missing column 'output'"
    )
    assert "needs data.template" in error(fmt, "template", {"input": "q"})
    assert "no {column} placeholder" in error(fmt, "template", {"input": "q"}, template="no fields")
    assert "must name a column" in error(fmt, "template", {"input": "q"}, template="{} {0}")


def test_prompt_completion_and_text():
    assert fmt("prompt_completion", {"prompt": "a", "completion": "b"}) == ("a", "b")
    assert fmt("text", {"text": "all of it"}) == ("", "all of it")
    assert error(fmt, "prompt_completion", {"prompt": "a"}).startswith("rows.jsonl:7: missing column 'completion'")
    no_output = {"instruction": "a", "output": None}  # JSON null counts as missing
    assert error(fmt, "alpaca", no_output).startswith("rows.jsonl:7: missing column 'output'")
    assert "unknown data format 'alpacca'; did you mean 'alpaca'?" == error(fmt, "alpacca", {})


def test_chat_with_config_template(tiny_tokenizer):
    prompt, completion = fmt("chat", {"messages": MESSAGES}, tokenizer=tiny_tokenizer, template=CHAT_TEMPLATE)
    # the template's BOS is stripped (tokenization adds it once); the prompt ends with the generation prompt
    assert prompt == "<|system|>Be brief.<|end|>\n<|user|>Name a sea.<|end|>\n<|assistant|>"
    # the last assistant turn with its end-of-turn marker; trailing whitespace dropped before EOS
    assert completion == "The North Sea.<|end|>"
    # the same as the full rendering, split at the prompt
    full = tiny_tokenizer.apply_chat_template(MESSAGES, tokenize=False, chat_template=CHAT_TEMPLATE)
    assert full == "<s>" + prompt + completion + "\n"


def test_chat_uses_the_tokenizers_own_template(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = CHAT_TEMPLATE.replace("<|end|>", "</s>")  # a template that writes EOS itself
    prompt, completion = fmt("chat", {"messages": json.dumps(MESSAGES)}, tokenizer=tok)  # CSV cells hold JSON
    assert completion == "The North Sea."  # EOS is appended once by tokenization, not twice
    ex = tokenize_example(prompt, completion, tok, 512)
    assert ex["input_ids"].count(tok.eos_token_id) == 3  # two earlier turns + the one EOS ending the answer


def test_chat_errors(tiny_tokenizer):
    assert tiny_tokenizer.chat_template is None
    msg = error(fmt, "chat", {"messages": MESSAGES}, tokenizer=tiny_tokenizer)
    assert msg.startswith("rows.jsonl:7: format 'chat' needs a chat template") and "data.template" in msg
    ends_with_user = {"messages": MESSAGES[:2]}
    assert "must end with an assistant turn" in error(
        fmt, "chat", ends_with_user, tokenizer=tiny_tokenizer, template=CHAT_TEMPLATE
    )
    assert "missing column 'messages'" in error(fmt, "chat", {"text": "x"}, tokenizer=tiny_tokenizer)


# ---------------------------------------------------------------- tokenization


def test_completion_only_labels_mask_exactly_the_prompt(tiny_tokenizer):
    tok = tiny_tokenizer
    prompt, completion = '### Question: "vivre"\n ### Answer: ', '{"references": []}'
    ex = tokenize_example(prompt, completion, tok, max_len=512)
    p = encode_prompt(prompt, tok)  # BOS + prompt, as generation sees it
    c = tok(completion, add_special_tokens=False)["input_ids"]
    assert p[0] == tok.bos_token_id
    assert ex["input_ids"] == p + c + [tok.eos_token_id]
    assert ex["labels"] == [IGNORE] * len(p) + c + [tok.eos_token_id]


def test_eos_is_the_last_label_and_never_masked(tiny_tokenizer):
    tok = tiny_tokenizer
    for prompt, completion, only in [
        ("Q: a\nA: ", "b", True),
        ("Q: a\nA: ", "", True),
        ("", "text", True),
        ("Q: a\nA: ", "b", False),
    ]:
        ex = tokenize_example(prompt, completion, tok, max_len=64, completion_only=only)
        assert ex["input_ids"][-1] == ex["labels"][-1] == tok.eos_token_id
        assert len(ex["input_ids"]) == len(ex["labels"])
    # completion_only=False: everything after BOS is a target
    ex = tokenize_example("Q: a\nA: ", "b", tok, max_len=64, completion_only=False)
    assert ex["labels"] == [IGNORE] + ex["input_ids"][1:]


def test_truncation_by_hand():
    bos, eos = [1], 2
    # long prompt, short completion: the prompt loses its left end
    ex = assemble(bos, [10, 11, 12, 13, 14, 15], [20, 21], eos, max_len=6)
    assert ex["input_ids"] == [1, 14, 15, 20, 21, 2]
    assert ex["labels"] == [IGNORE, IGNORE, IGNORE, 20, 21, 2]
    # long completion: it loses its right end and gets no EOS (never teach stopping mid-answer);
    # the prompt keeps half the room
    ex = assemble(bos, [10, 11, 12, 13], [20, 21, 22, 23, 24, 25], eos, max_len=7)
    assert ex["input_ids"] == [1, 12, 13, 20, 21, 22, 23]
    assert ex["labels"] == [IGNORE, IGNORE, IGNORE, 20, 21, 22, 23]
    # a short prompt is kept whole
    ex = assemble(bos, [10], [20, 21, 22, 23, 24, 25], eos, max_len=6)
    assert ex["input_ids"] == [1, 10, 20, 21, 22, 23]
    # nothing too long: untouched
    assert assemble([], [10], [20], eos, max_len=3)["input_ids"] == [10, 20, 2]
    with pytest.raises(LmforgeError):
        assemble(bos, [10], [20], eos, max_len=3)


def test_truncation_with_a_real_tokenizer(tiny_tokenizer):
    cut = tokenize_example("Le vent se lève " * 20, "il faut tenter de vivre " * 20, tiny_tokenizer, max_len=40)
    assert len(cut["input_ids"]) == 40 and tiny_tokenizer.eos_token_id not in cut["labels"]
    whole = tokenize_example("Le vent se lève " * 20, "il faut", tiny_tokenizer, max_len=40)
    assert len(whole["input_ids"]) == 40 and whole["labels"][-1] == tiny_tokenizer.eos_token_id


def test_no_eos_is_an_error():
    class NoEos:
        eos_token_id, bos_token_id = None, None

    assert "no EOS token" in error(tokenize_example, "a", "b", NoEos(), 16)


# ---------------------------------------------------------------- load_examples: mixtures and splits


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def make_sources(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"prompt": f"a{i}: ", "completion": "x"} for i in range(10)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": f"b{i}: ", "completion": "y"} for i in range(20)])
    return a, b


def test_mixture_weights_give_counts(tmp_path, tiny_tokenizer):
    a, b = make_sources(tmp_path)
    cfg = DataConfig(
        train=[{"path": a, "weight": 2.5}, {"path": b, "weight": 0.5}], format="prompt_completion", val_fraction=0.0
    )
    train, val = load_examples(cfg, tiny_tokenizer, 64, seed=0)
    assert val == []
    by_source = Counter(ex["prompt"][0] for ex in train)
    assert by_source == {"a": 25, "b": 10}  # round(2.5 × 10), round(0.5 × 20)
    per_row = Counter(ex["prompt"] for ex in train if ex["prompt"].startswith("a"))
    assert sorted(set(per_row.values())) == [2, 3] and len(per_row) == 10  # two whole copies, then 5 rows once more
    assert len({ex["prompt"] for ex in train if ex["prompt"].startswith("b")}) == 10  # a subsample: no repeats
    again, _ = load_examples(cfg, tiny_tokenizer, 64, seed=0)
    assert [ex["prompt"] for ex in again] == [ex["prompt"] for ex in train]


def test_weighted_and_split_helpers():
    import random

    items = list(range(7))
    assert len(weighted(items, 3.0, random.Random(0))) == 21
    assert len(weighted(items, 0.3, random.Random(0))) == 2
    assert weighted([], 2.0, random.Random(0)) == []
    keep, held = split_indices(10, 0.2, random.Random(0))
    assert len(held) == 2 and sorted(keep + held) == list(range(10))
    assert split_indices(2, 0.01, random.Random(0))[1] != []  # at least one held out row
    assert split_indices(1, 0.5, random.Random(0)) == ([0], [])  # never the only row


def test_split_is_deterministic_and_disjoint(tmp_path, tiny_tokenizer):
    a, b = make_sources(tmp_path)
    cfg = DataConfig(train=[a, b], format="prompt_completion", val_fraction=0.2)

    def prompts(seed):
        train, val = load_examples(cfg, tiny_tokenizer, 64, seed=seed)
        return sorted(ex["prompt"] for ex in train), sorted(ex["prompt"] for ex in val)

    train0, val0 = prompts(0)
    assert len(val0) == 2 + 4 and len(train0) == 8 + 16  # 20 % of each source
    assert not set(train0) & set(val0)
    assert prompts(0) == (train0, val0)
    assert any(prompts(s)[1] != val0 for s in (1, 2, 3))  # another seed holds out other rows


def test_val_sources_replace_the_split(tmp_path, tiny_tokenizer):
    a, b = make_sources(tmp_path)
    cfg = DataConfig(train=[a], val=[b], format="prompt_completion", val_fraction=0.5)
    train, val = load_examples(cfg, tiny_tokenizer, 64, seed=0)
    assert len(train) == 10 and len(val) == 20
    assert {ex["row"]["completion"] for ex in val} == {"y"}
    ex = val[0]
    assert ex["prompt"] == ex["row"]["prompt"] and ex["completion"] == "y"


def test_text_source_lines_are_all_target_examples(tmp_path, tiny_tokenizer):
    (tmp_path / "verse.txt").write_text("Le vent se lève.\n\nIl faut vivre.\n", encoding="utf-8")
    cfg = DataConfig(train=[{"path": str(tmp_path / "verse.txt"), "format": "text"}], format="alpaca", val_fraction=0.0)
    train, _ = load_examples(cfg, tiny_tokenizer, 64, seed=0)
    assert sorted(ex["completion"] for ex in train) == ["Il faut vivre.", "Le vent se lève."]
    for ex in train:
        assert ex["labels"][0] == IGNORE and ex["labels"][1:] == ex["input_ids"][1:]


def test_bad_row_in_a_source_names_file_line(tmp_path, tiny_tokenizer):
    p = write_jsonl(tmp_path / "c.jsonl", [{"input": "q", "output": "a"}, {"input": "q2"}])
    cfg = DataConfig(train=[p], format="template", template=SEED_TEMPLATE)
    assert error(load_examples, cfg, tiny_tokenizer, 64, 0) == f"{p}:2: missing column 'output' (columns: 'input')"
    assert "data.train is empty" in error(load_examples, DataConfig(), tiny_tokenizer, 64, 0)


def test_pad_is_left_alone(tmp_path, tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    pad = (tok.pad_token, tok.pad_token_id)
    a, _ = make_sources(tmp_path)
    load_examples(DataConfig(train=[a], format="prompt_completion"), tok, 64, seed=0)
    assert (tok.pad_token, tok.pad_token_id) == pad and tok.pad_token_id != tok.eos_token_id


def test_seed_cantos_data_through_the_seed_template(tiny_tokenizer):
    from conftest import DATA

    cfg = DataConfig(
        train=[str(DATA / "cantos_rows.jsonl")],
        format="template",
        template=SEED_TEMPLATE.replace("\n", "\\n"),
        val_fraction=0.1,
    )
    train, val = load_examples(cfg, tiny_tokenizer, 1024, seed=1337)  # room for the longest answer
    assert len(train) + len(val) == 12 and len(val) == 1  # round(12 * 0.1)
    for ex in train + val:
        assert ex["prompt"] == f'### Question: "{ex["row"]["input"]}"\n ### Answer: '
        assert ex["completion"] == ex["row"]["output"] and json.loads(ex["completion"])
        assert ex["labels"][-1] == tiny_tokenizer.eos_token_id
