"""Text and JSON metrics against rouge_score's own scorer and hand computations."""

from __future__ import annotations

import json

import pytest
from conftest import DATA

from lmforge.core.registry import METRICS
from lmforge.evaluate.report import best_rows, to_csv, to_json, to_markdown
from lmforge.scoring import metrics as M
from lmforge.scoring.tasks import load_task

# the Cantos schema as a task YAML gives it (through check_schema), from tests/data
CANTOS_SCHEMA = load_task(str(DATA / "cantos_task.yaml")).schema

ENGLISH = [
    ("the cat sat on the mat", "the cat is on the mat"),
    ("Shall I compare thee to a summer's day?", "Shall I compare you to a summer day; thou art more lovely."),
    ("The sea is calm tonight, the tide is full (1867).", "the tide is full and the moon lies fair 1867"),
    ("", "nothing predicted"),
]


@pytest.mark.parametrize("pred,ref", ENGLISH)
def test_rouge_matches_rouge_score_default_on_english(pred, ref):
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])  # its own tokenizer
    want = default.score(ref, pred)
    assert M.rouge1(pred, ref) == want["rouge1"].fmeasure
    assert M.rouge2(pred, ref) == want["rouge2"].fmeasure
    assert M.rougeL(pred, ref) == want["rougeL"].fmeasure


def test_rouge_counts_accented_words():
    from rouge_score import rouge_scorer

    pred, ref = "l'été est là", "l'été est beau"
    # ours: [l, été, est, là] vs [l, été, est, beau]: 3 of 4 unigrams shared -> F1 = 0.75
    assert M.rouge1(pred, ref) == pytest.approx(0.75)
    # bigrams: (l,été) (été,est) shared of 3 -> 2/3
    assert M.rouge2(pred, ref) == pytest.approx(2 / 3)
    # the default tokenizer turns "été" into "t" and "là" into "l": a different (wrong) score
    assert M.rouge1("la fenêtre était ouverte", "la fenêtre était fermée") == pytest.approx(0.75)
    default = rouge_scorer.RougeScorer(["rouge1"]).score("la fenêtre était fermée", "la fenêtre était ouverte")
    # [la, fen, tre, tait, ouverte] vs [la, fen, tre, tait, ferm, e]: P=4/5, R=4/6
    assert default["rouge1"].fmeasure == pytest.approx(8 / 11)
    assert M.rouge1("été", "t") == 0.0
    assert M.UnicodeTokenizer().tokenize("Été, ÇA va? déjà_vu") == ["été", "ça", "va", "déjà", "vu"]


def test_json_exact_match_is_canonical():
    assert M.json_exact_match('{"b": [1, 2], "a": "x"}', '{"a":"x","b":[1,2]}') == 1.0
    assert M.json_exact_match('{"a": 1}', '{"a": true}') == 0.0  # Python says 1 == True; JSON does not
    assert M.json_exact_match("[0]", "[false]") == 0.0
    assert M.json_exact_match('{"a": 1.0}', '{"a": 1}') == 1.0
    assert M.json_exact_match('{"a": [2, 1]}', '{"a": [1, 2]}') == 0.0  # order of a list matters
    assert M.json_exact_match('{"a": 1', '{"a": 1}') == 0.0  # cut-off output is never valid
    assert M.canonical_json({"b": 1.0, "a": [True, None]}) == '{"a":[true,null],"b":1}'


def test_json_valid_and_schema_valid():
    good = '{"references": [{"canto": 2, "lines": [-1]}]}'
    assert M.json_valid(good) == 1.0 and M.json_valid('{"references": [') == 0.0
    assert M.schema_valid(good, schema=CANTOS_SCHEMA) == 1.0
    assert M.schema_valid('{"references": [{"canto": 2}]}', schema=CANTOS_SCHEMA) == 0.0  # lines missing
    assert M.schema_valid('{"references": [{"canto": true, "lines": []}]}', schema=CANTOS_SCHEMA) == 0.0
    assert M.schema_valid('{"references": [{"canto": 121, "lines": []}]}', schema=CANTOS_SCHEMA) == 0.0  # > 120
    assert M.schema_valid("[1, 2]", schema=None) == 1.0


def test_field_f1_by_hand():
    ref = '{"references": [{"canto": 2, "lines": [1, 2]}]}'
    # facts: canto 2, (canto 2, line 1), (canto 2, line 2) vs canto 2, (2, 2), (2, 3): 2 shared of 3 each
    assert M.field_f1('{"references": [{"canto": 2, "lines": [2, 3]}]}', ref) == pytest.approx(2 / 3)
    # right lines, wrong canto: nothing shared (lines are read in their canto's context)
    assert M.field_f1('{"references": [{"canto": 3, "lines": [1, 2]}]}', ref) == 0.0
    # whole canto predicted (lines: []): P = 1/1, R = 1/3 -> F1 = 0.5
    assert M.field_f1('{"references": [{"canto": 2, "lines": []}]}', ref) == pytest.approx(0.5)
    # two references, one right: P = 3/4, R = 3/3 -> 6/7
    two = '{"references": [{"canto": 2, "lines": [1, 2]}, {"canto": 9, "lines": []}]}'
    assert M.field_f1(two, ref) == pytest.approx(6 / 7)
    assert M.field_f1('{"references": []}', '{"references": []}') == 1.0
    assert M.field_f1('{"references": []}', ref) == 0.0
    assert M.field_f1("not json", ref) == 0.0
    assert M.field_f1('{"a": 1, "b": true}', '{"a": 1, "b": 1}') == pytest.approx(0.5)  # true is not 1


def test_json_facts_shape():
    facts = M.json_facts(json.loads('{"references": [{"canto": 2, "lines": [-1]}]}'))
    canto = ("canto", ("num", 2))
    assert facts == {("references", canto): 1, ("references", canto, "lines", ("num", -1)): 1}


def test_metrics_registry_declares_direction():
    for name in ("rouge1", "rouge2", "rougeL", "exact_match", "json_valid", "schema_valid", "json_em", "field_f1"):
        assert METRICS.get(name).higher_is_better is True
    for name in ("perplexity", "bits_per_char", "bits_per_byte"):
        assert METRICS.get(name).higher_is_better is False
    assert M.higher_is_better("perplexity:val.txt") is False
    assert M.higher_is_better("json_em@json") is True
    assert M.higher_is_better("val_loss") is False


def test_aggregate_is_a_mean():
    out = M.aggregate(["exact_match", "json_valid"], ["a", "[1]", " a "], ["a", "[1]", "b"])
    assert out == {"exact_match": pytest.approx(2 / 3), "json_valid": pytest.approx(1 / 3)}


def test_report_marks_best_by_direction(tmp_path):
    from lmforge.evaluate.report import write_report

    table = {"a": {"perplexity:x.txt": 10.0, "json_em": 0.5}, "b": {"perplexity:x.txt": 12.0, "json_em": 0.7}}
    assert best_rows(table, "perplexity:x.txt") == {"a"} and best_rows(table, "json_em") == {"b"}
    md = to_markdown(table)
    assert "| a | **10** | 0.5 |" in md and "| b | 12 | **0.7** |" in md and "json_em ↑" in md
    assert to_csv(table).splitlines()[1] == "a,10.0,0.5"
    doc = json.loads(to_json(table))
    assert doc["metrics"]["perplexity:x.txt"]["higher_is_better"] is False
    assert doc["results"][1] == {"model": "b", "perplexity:x.txt": 12.0, "json_em": 0.7}
    paths = write_report({"a": {"json_em": float("nan")}}, tmp_path)
    assert json.loads(paths["json"].read_text())["results"][0]["json_em"] is None
