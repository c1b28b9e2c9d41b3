"""Behaviour of the losses, the example and batch builders and the metrics that no other test pinned.

Each test was found as a surviving mutant (``benchmarks/mutation.py``): a small change to the code that
every other test let through. Expectations are computed by hand on small inputs.
"""

from __future__ import annotations

import json
import logging
import math
from types import SimpleNamespace

import pytest
import torch

from lmforge.core.config import DataConfig
from lmforge.core.errors import LmforgeError
from lmforge.data import readers
from lmforge.data.batches import ExampleBatches, Layout, PackedStream, collate, n_targets
from lmforge.data.examples import (
    IGNORE,
    assemble,
    encode_prompt,
    load_examples,
    split_indices,
    tokenize_example,
)
from lmforge.losses import least_likely as ll
from lmforge.losses.common import forward_logits
from lmforge.scoring import metrics as M

LN = torch.log


class CharTok:
    """Ids are code points; like Llama's tokenizer it adds BOS (1) unless told not to; EOS is 2."""

    bos_token_id, eos_token_id, marker = 1, 2, "#"

    def __call__(self, text, add_special_tokens=True, verbose=True):
        one = lambda t: (
            ([self.bos_token_id] if add_special_tokens and self.bos_token_id is not None else [])
            + [ord(ch) for ch in t]
        )
        return {"input_ids": [one(t) for t in text] if isinstance(text, list) else one(text)}


class NoBosTok(CharTok):
    bos_token_id = None


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "lmforge.data.examples"]


def pairs(n, prefix="p"):
    return [{"prompt": f"{prefix}{i}", "completion": "c"} for i in range(n)]


# ---------------------------------------------------------------- losses


class MaskEcho(torch.nn.Module):
    """A 'model' whose logits (B, T, 1) are the input ids, zeroed where the attention mask is 0."""

    def forward(self, input_ids=None, attention_mask=None):
        x = input_ids if attention_mask is None else input_ids * attention_mask
        return SimpleNamespace(logits=x.float().unsqueeze(-1))


def test_forward_logits_passes_the_batch_attention_mask():
    batch = {"input_ids": torch.tensor([[3, 4, 5]]), "attention_mask": torch.tensor([[0, 1, 1]])}
    assert forward_logits(MaskEcho(), batch)[..., 0].tolist() == [[0.0, 4.0, 5.0]]
    assert forward_logits(MaskEcho(), {"input_ids": torch.tensor([[3, 4, 5]])})[..., 0].tolist() == [[3.0, 4.0, 5.0]]


def test_inverse_kl_skips_positions_whose_label_is_ignored():
    # position 0 predicts token 1, whose label is -100: its (non-uniform) reference must not count;
    # position 1 predicts token 2: uniform target against uniform q, KL 0.
    ref = torch.zeros(1, 3, 4)
    ref[0, 0] = LN(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    logits = torch.zeros(1, 3, 4)
    labels = torch.tensor([[5, IGNORE, 2]])
    assert ll.inverse_kl_sum(logits, ref, labels, beta=1.0).item() == pytest.approx(0.0, abs=1e-7)


# token 4 is rare everywhere (the plain argmin at both positions); token 0 is unlikely only at position 1.
# Each token's mean over the two positions: [1, 1.25, 2, 3, -4];
# centred: pos0 [4, .25, 0, 0, 0], pos1 [-4, -.25, 0, 0, 0]
Z = torch.tensor([[[5.0, 1.5, 2.0, 3.0, -4.0], [-3.0, 1.0, 2.0, 3.0, -4.0]]])
KEEP = torch.ones(1, 2, dtype=torch.bool)


def test_contextual_argmin_bottom_is_a_fraction_of_v_minus_one():
    # V = 5: bottom 0.2 keeps int(0.2 * 4) + 1 = 1 token, the plain argmin; 0.25 keeps 2
    assert ll.contextual_argmin_targets(Z, KEEP, bottom=0.2).tolist() == [[4, 4]]
    assert ll.contextual_argmin_targets(Z, KEEP, bottom=0.25).tolist() == [[4, 0]]
    # the default, 2 %, keeps int(0.02 * 4) + 1 = 1 token here
    assert ll.contextual_argmin_targets(Z, KEEP).tolist() == [[4, 4]]


def test_contextual_argmin_falls_back_per_position_to_any_allowed_token():
    allowed = torch.tensor([True, False, True, True, False])  # neither 1 nor 4
    # bottom 2: pos0 {4, 1}, none allowed -> the most unusual allowed token: centred 4, 0, 0 -> token 2;
    # pos1 {4, 0}: 0 is allowed
    assert ll.contextual_argmin_targets(Z, KEEP, allowed, bottom=0.25).tolist() == [[2, 0]]


def test_contextual_argmin_with_no_scored_position_is_the_bottom_argmin():
    none = torch.zeros(1, 2, dtype=torch.bool)  # a micro-batch whose labels are all -100: no mean to subtract
    assert ll.contextual_argmin_targets(Z, none, bottom=0.25).tolist() == [[4, 4]]


def test_hard_contextual_ce_keeps_to_allowed_tokens():
    ref = torch.cat([Z, torch.zeros(1, 1, 5)], dim=1)  # (1, 3, 5)
    logits = LN(torch.tensor([0.1, 0.2, 0.3, 0.2, 0.2])).expand(1, 3, 5).clone()
    labels = torch.tensor([[-100, 1, 1]])
    no_zero = torch.tensor([False, True, True, True, True])
    # targets 4 and 4 (token 0, the contextual pick at position 1, is not allowed): p = 0.2 each
    got = ll.hard_inverse_ce_sum(logits, ref, labels, allowed=no_zero, bottom=0.25).item()
    assert got == pytest.approx(-2 * math.log(0.2), rel=1e-5)


# ---------------------------------------------------------------- examples


def test_prompt_and_completion_are_tokenized_without_the_tokenizers_specials():
    tok = CharTok()  # adds BOS itself by default, as Llama's does: one BOS, from special_ids, not three
    ex = tokenize_example("ab", "c", tok, max_len=16)
    assert ex == {"input_ids": [1, 97, 98, 99, 2], "labels": [IGNORE, IGNORE, IGNORE, 99, 2]}
    assert encode_prompt("ab", tok) == [1, 97, 98]


def test_a_tokenizer_without_bos_gets_none():
    ex = tokenize_example("ab", "c", NoBosTok(), max_len=16)
    assert ex == {"input_ids": [97, 98, 99, 2], "labels": [IGNORE, IGNORE, 99, 2]}
    assert encode_prompt("ab", NoBosTok()) == [97, 98]


def test_too_short_max_len_says_so():
    with pytest.raises(LmforgeError, match=r"max_len=3 is too short for an example"):
        assemble([1], [10], [20], 2, max_len=3)


def test_split_indices_edges():
    import random

    assert split_indices(5, 0.0, random.Random(0)) == ([0, 1, 2, 3, 4], [])  # no fraction: nothing held out
    keep, held = split_indices(10, 0.05, random.Random(0))  # round(0.5) = 0: at least one, and only one
    assert len(held) == 1 and sorted(keep + held) == list(range(10))
    keep, held = split_indices(2, 0.9, random.Random(0))  # round(1.8) = 2: one row stays for training
    assert len(keep) == 1 and len(held) == 1


def test_load_examples_batches_through_the_tokenizer_without_its_specials(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "ab", "completion": "c"}])
    train, _ = load_examples(DataConfig(train=[p], format="prompt_completion", val_fraction=0.0), CharTok(), 16, 0)
    assert train[0]["input_ids"] == [1, 97, 98, 99, 2] and train[0]["labels"] == [IGNORE, IGNORE, IGNORE, 99, 2]


def test_completion_only_false_reaches_the_labels(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "ab", "completion": "c"}])
    cfg = DataConfig(train=[p], format="prompt_completion", val_fraction=0.0, completion_only=False)
    train, _ = load_examples(cfg, CharTok(), 16, 0)
    assert train[0]["labels"] == [IGNORE, 97, 98, 99, 2]  # only BOS is masked


def test_every_validation_source_is_used(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", pairs(4, "a"))
    b = write_jsonl(tmp_path / "b.jsonl", pairs(3, "b"))
    c = write_jsonl(tmp_path / "c.jsonl", pairs(2, "c"))
    train, val = load_examples(DataConfig(train=[a], val=[b, c], format="prompt_completion"), CharTok(), 16, 0)
    assert len(train) == 4 and sorted(ex["prompt"] for ex in val) == ["b0", "b1", "b2", "c0", "c1"]


def test_holdout_selects_a_files_fixed_split(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", pairs(10))

    def prompts(holdout):
        cfg = DataConfig(train=[{"path": p, "holdout": holdout}], format="prompt_completion", val_fraction=0.0)
        return {ex["prompt"] for ex in load_examples(cfg, CharTok(), 16, 0)[0]}

    test, train = prompts("test"), prompts("train")
    assert len(test) == 2 and len(train) == 8  # the fixed 20 % test part
    assert not test & train and test | train == {f"p{i}" for i in range(10)}


def test_hub_source_options_reach_the_hub_reader(tmp_path, monkeypatch):
    calls = []

    def read_hub(name, split="train", subset=None, max_rows=None):
        calls.append((name, split, subset, max_rows))
        return [readers.Record(f"{name}[{split}] row 1", {"prompt": "a", "completion": "b"})]

    monkeypatch.setattr(readers, "read_hub", read_hub)
    monkeypatch.chdir(tmp_path)  # "someone/rows" must not exist as a local path
    source = {"path": "someone/rows", "split": "validation", "subset": "en", "max_rows": 3}
    train, _ = load_examples(DataConfig(train=[source], format="prompt_completion", val_fraction=0.0), CharTok(), 16, 0)
    assert calls == [("someone/rows", "validation", "en", 3)]
    assert train[0]["input_ids"] == [1, 97, 98, 2]


def marker_format(row, tokenizer=None, **_):
    """A user's format that reads the tokenizer (as chat templates do)."""
    if tokenizer is None:
        raise LmforgeError("this format needs the tokenizer")
    return tokenizer.marker + row["prompt"], row["completion"]


def test_formats_get_the_tokenizer(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "ab", "completion": "c"}])
    cfg = DataConfig(train=[p], format=f"{__name__}:marker_format", val_fraction=0.0)
    train, _ = load_examples(cfg, CharTok(), 16, 0)
    assert train[0]["prompt"] == "#ab" and train[0]["input_ids"] == [1, 35, 97, 98, 99, 2]


def test_truncation_warning_counts_the_cut_examples(tmp_path, caplog):
    # max_len 10 leaves 8 tokens for prompt + completion after BOS and EOS: 5 + 4 is cut, 2 + 2 and 4 + 4 fit
    rows = [
        {"prompt": "abcde", "completion": "fghi"},
        {"prompt": "ab", "completion": "cd"},
        {"prompt": "abcd", "completion": "efgh"},
    ]
    p = write_jsonl(tmp_path / "a.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="lmforge.data.examples"):
        load_examples(DataConfig(train=[p], format="prompt_completion", val_fraction=0.0), CharTok(), 10, 0)
    assert warnings(caplog) == [f"{p}: 1 of 3 examples truncated to max_len=10"]


def test_a_weight_that_keeps_nothing_is_reported(tmp_path, caplog):
    a = write_jsonl(tmp_path / "a.jsonl", pairs(10, "a"))
    b = write_jsonl(tmp_path / "b.jsonl", pairs(10, "b"))
    cfg = DataConfig(
        train=[{"path": a, "weight": 0.01}, {"path": b, "weight": 1.0}], format="prompt_completion", val_fraction=0.0
    )
    with caplog.at_level(logging.WARNING, logger="lmforge.data.examples"):
        train, _ = load_examples(cfg, CharTok(), 16, 0)
    assert len(train) == 10  # round(0.01 x 10) = 0 rows of a
    assert warnings(caplog) == [f"{a}: weight 0.01 keeps no examples"]


# ---------------------------------------------------------------- batches


def example(i, n_targets_):
    """input_ids [i, i, ...] with ``n_targets_`` targets after the (masked) first position."""
    return {"input_ids": [i] * (n_targets_ + 1), "labels": [IGNORE] + [i] * n_targets_}


def test_collate_by_hand():
    b = collate([{"input_ids": [5, 6, 7], "labels": [IGNORE, 6, 7]}, {"input_ids": [8, 9], "labels": [IGNORE, 9]}], 0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert b["labels"].tolist() == [[IGNORE, 6, 7], [IGNORE, 9, IGNORE]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert {t.dtype for t in b.values()} == {torch.long}


def test_n_targets_counts_labels_after_the_shift():
    assert n_targets({"labels": [IGNORE, IGNORE, 5, 6]}) == 2
    assert n_targets({"labels": [3, IGNORE, 5]}) == 1  # label 0 is never predicted


def test_layout_gives_each_rank_its_rows():
    rows = list(range(8))
    assert Layout(batch_size=2, grad_accum=2, world=2, rank=0).mine(rows) == [[0, 1], [4, 5]]
    assert Layout(batch_size=2, grad_accum=2, world=2, rank=1).mine(rows) == [[2, 3], [6, 7]]


def test_example_batches_count_the_steps_target_tokens():
    train = [example(i, 3) for i in range(10, 14)]
    batches = ExampleBatches(train, [], Layout(batch_size=1, grad_accum=2), seed=0, pad_id=0).train_step(1)
    assert [b["num_tokens"] for b in batches] == [6, 6]  # the two rows of the step, 3 targets each
    one = ExampleBatches([example(7, 1)], [], Layout(batch_size=1, grad_accum=1), seed=0, pad_id=0)
    assert one.train_step(0)[0]["num_tokens"] == 1


def test_example_batches_need_examples():
    with pytest.raises(ValueError, match="^no training examples$"):
        ExampleBatches([], [], Layout(1, 1), seed=0, pad_id=0)


@pytest.mark.parametrize("group", [False, True])
def test_example_order_depends_on_the_seed_only(group):
    train = [example(i, 1 + i % 5) for i in range(40)]

    def order(global_seed):
        torch.manual_seed(global_seed)  # the global generator must play no part
        eb = ExampleBatches(train, [], Layout(batch_size=2, grad_accum=1), seed=3, pad_id=0, group_by_length=group)
        return [b["input_ids"][:, 0].tolist() for s in range(20) for b in eb.train_step(s)]

    assert order(0) == order(1)


def test_grouped_epoch_longer_than_one_group_sees_every_example_once():
    train = [example(i, 1 + i % 7) for i in range(70)]  # 35 global batches of 2: groups of 32 and 3 batches
    eb = ExampleBatches(train, [], Layout(batch_size=2, grad_accum=1), seed=0, pad_id=0, group_by_length=True)
    seen = [i for s in range(35) for i in eb.train_step(s)[0]["input_ids"][:, 0].tolist()]
    assert sorted(seen) == list(range(70))


def test_example_val_batches_by_hand():
    val = [example(i, n) for i, n in zip(range(10, 15), (1, 2, 3, 1, 2))]
    eb = ExampleBatches([example(1, 1)], val, Layout(batch_size=2, grad_accum=1), seed=0, pad_id=0)
    got = eb.val_batches(max_batches=10)
    assert [b["input_ids"][:, 0].tolist() for b in got] == [[10, 11], [12, 13], [14]]
    assert [b["num_tokens"] for b in got] == [3, 4, 2]
    assert [b["num_tokens"] for b in eb.val_batches(max_batches=1)] == [3]
    ones = ExampleBatches([example(1, 1)], val, Layout(batch_size=1, grad_accum=1), seed=0, pad_id=0)
    assert [b["num_tokens"] for b in ones.val_batches(10)] == [1, 2, 3, 1, 2]
    second = ExampleBatches([example(1, 1)], val, Layout(batch_size=2, grad_accum=1, world=2, rank=1), 0, 0)
    assert [b["input_ids"][:, 0].tolist() for b in second.val_batches(10)] == [[11, 13]]


def test_packed_stream_needs_more_than_a_block():
    with pytest.raises(ValueError, match="training text has 4 tokens, fewer than one block of 4"):
        PackedStream(torch.arange(4), torch.arange(8), 4, Layout(1, 1), seed=0)
    PackedStream(torch.arange(6), torch.arange(8), 4, Layout(1, 1), seed=0)  # two windows fit: fine


def test_packed_train_step_divides_by_the_global_batch():
    stream = PackedStream(torch.arange(50), torch.arange(8), 4, Layout(batch_size=2, grad_accum=2), seed=0)
    batches = stream.train_step(0)
    assert len(batches) == 2 and all(b["input_ids"].shape == (2, 4) for b in batches)
    assert [b["num_tokens"] for b in batches] == [12, 12]  # 4 rows x 3 targets, in each micro-batch


def test_packed_windows_depend_on_the_seed_only_and_may_start_at_zero():
    def starts(global_seed):
        torch.manual_seed(global_seed)
        stream = PackedStream(torch.arange(6), torch.arange(8), 4, Layout(batch_size=64, grad_accum=1), seed=5)
        return stream.train_step(3)[0]["input_ids"][:, 0].tolist()

    assert starts(0) == starts(1)
    assert set(starts(0)) == {0, 1}  # 6 tokens, block 4: two possible windows


def test_packed_val_batches_by_hand():
    layout = Layout(batch_size=2, grad_accum=1)
    for n in (13, 14):  # (n - 1) // 3 = 4 blocks
        got = PackedStream(torch.arange(50), torch.arange(n), 3, layout, seed=0).val_batches(max_batches=10)
        assert [b["input_ids"].tolist() for b in got] == [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]
        assert [b["num_tokens"] for b in got] == [4, 4]  # 2 rows x 2 targets
    spread = PackedStream(torch.arange(50), torch.arange(13), 3, layout, seed=0).val_batches(max_batches=1)
    assert [b["input_ids"].tolist() for b in spread] == [[[0, 1, 2], [9, 10, 11]]]  # first and last block
    one = PackedStream(torch.arange(50), torch.arange(4), 3, layout, seed=0).val_batches(max_batches=10)
    assert [b["input_ids"].tolist() for b in one] == [[[0, 1, 2]]] and one[0]["num_tokens"] == 2
    assert PackedStream(torch.arange(50), torch.arange(3), 3, layout, seed=0).val_batches(10) == []


# ---------------------------------------------------------------- metrics


def test_rouge_scorer_is_built_once_with_the_unicode_tokenizer(monkeypatch):
    monkeypatch.setattr(M, "_SCORERS", {})  # as in a fresh process: the first call builds the scorer
    assert M.rouge1("l'été est là", "l'été est beau") == pytest.approx(0.75)
    assert M.rouge2("l'été est là", "l'été est beau") == pytest.approx(2 / 3)
    assert M.rougeL("l'été est là", "l'été est beau") == pytest.approx(0.75)
    assert M.rouge1("été", "t") == 0.0  # rouge_score's own tokenizer reads "été" as "t"
    scorer = M._SCORERS["scorer"]
    M.rouge1("a", "a")
    assert M._SCORERS == {"scorer": scorer}


def test_json_numbers_are_not_rounded():
    assert M.json_exact_match('{"a": 2.5}', '{"a": 2}') == 0.0
    assert M.field_f1('{"a": 2.5}', '{"a": 2}') == 0.0


def test_canonical_json_keeps_non_ascii_text():
    assert M.canonical_json({"a": "été"}) == '{"a":"été"}'


def test_json_facts_of_scalars_and_repeated_items():
    assert M.json_facts(3) == {(("num", 3),): 1}
    assert M.json_facts([1, 1]) == {(("num", 1),): 2}
    assert M.field_f1("3", "3") == 1.0 and M.field_f1("3", "4") == 0.0
    assert M.field_f1("[1, 1]", "[1]") == pytest.approx(2 / 3)  # P = 1/2, R = 1


def test_direction_of_suffixed_names():
    assert M.direction("json_em@json") is True
    assert M.direction("perplexity@json") is False
    assert M.direction("perplexity:val.txt") is False


def test_aggregate_edges():
    out = M.aggregate(["exact_match"], [], [])
    assert math.isnan(out["exact_match"])
    schema = {"type": "array"}
    assert M.aggregate(["schema_valid"], ['{"a": 1}', "[1]"], ["", ""], schema=schema) == {"schema_valid": 0.5}
    with pytest.raises(LmforgeError, match=r"metric 'perplexity' is computed on whole texts"):
        M.aggregate(["perplexity"], ["a"], ["a"])
