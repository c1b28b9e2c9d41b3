"""Verse measures in ``lmforge eval``: rhyme rate, distinct-n and syllables per line against hand counts on
hand-written poems (per poem and pooled over a set), a task whose rows are prompts only, and the real command."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("phonemizer")
pytest.importorskip("pronouncing")

from lmforge.cli import main  # noqa: E402
from lmforge.core.errors import LmforgeError  # noqa: E402
from lmforge.core.registry import METRICS  # noqa: E402
from lmforge.rewards import measures  # noqa: E402
from lmforge.scoring.metrics import aggregate, direction  # noqa: E402
from lmforge.scoring.tasks import load_task  # noqa: E402

# mat/fat and sun/fun rhyme (AABB 2 of 2); night/bright do, cold/blue do not (1 of 2); high/old do not (0 of 1)
RHYMED = "The cat sat on the mat\nA dog was very fat\nI like the sun\nWe had some fun\n"
HALF = "I walk at night\nThe moon is bright\nThe wind is cold\nThe sea is blue\n"
PAIR = "The stars are high\nThe stones are old\n"
# spelled with the letters the tiny test tokenizer knows: "like", "We" would lose their k and W
LEARNED = "The cat sat on the mat\nA dog was very fat\nI see the sun\nAnd that is fun\n"


def pooled(name: str, poems: list[str], **args) -> float:
    return aggregate([name], poems, [""] * len(poems), **args)[name]


def per_poem(name: str, poem: str, **args) -> float:
    return METRICS.get(name).fn(poem, "", **args)


def test_rhyme_rate_per_poem_and_pooled_by_hand():
    assert [per_poem("rhyme_rate_en", p) for p in (RHYMED, HALF, PAIR)] == [1.0, 0.5, 0.0]
    # pooled: (2 + 1 + 0) rhyming pairs of (2 + 2 + 1) asked, not the mean of the three rates (0.5)
    assert pooled("rhyme_rate_en", [RHYMED, HALF, PAIR]) == pytest.approx(3 / 5)
    # ABAB asks mat/sun and fat/fun in RHYMED, night/cold and bright/blue in HALF: none rhyme
    assert pooled("rhyme_rate_en", [RHYMED, HALF], scheme="ABAB") == 0.0
    assert direction("rhyme_rate_en") is True


def test_rhyme_rate_in_french_by_sound():
    poem = "Je chante la chanson\nQui monte à la maison\nLe vent souffle la nuit\nEt rien ne dit pourquoi\n"
    assert per_poem("rhyme_rate_fr", poem) == 0.5  # chanson/maison rhyme, nuit/pourquoi do not
    assert per_poem("rhyme_rate_fr", poem, scheme="ABBA") == 0.0  # chanson/pourquoi, maison/nuit


def test_distinct_n_across_samples_by_hand():
    texts = ["a b a b", "a b c"]
    # per text: 2 distinct of 4 words, 3 of 3; across both: a, b, c of 7 words
    assert per_poem("distinct_1", texts[0]) == 0.5 and per_poem("distinct_1", texts[1]) == 1.0
    assert pooled("distinct_1", texts) == pytest.approx(3 / 7)
    # bigrams: (a b) (b a) (a b) and (a b) (b c): 3 distinct of 5; none spans the two texts
    assert per_poem("distinct_2", texts[0]) == pytest.approx(2 / 3)
    assert pooled("distinct_2", texts) == pytest.approx(3 / 5)
    assert pooled("distinct_2", ["one", ""]) == 0.0  # no bigram at all
    assert direction("distinct_2") is True


def test_syllables_per_line_by_hand():
    # the-cat-sat-on-the-mat 6, a-dog-was-ve-ry-fat 6, i-like-the-sun 4, we-had-some-fun 4; high/old lines 4, 4
    assert per_poem("syllables_per_line_en", RHYMED) == 5.0
    assert per_poem("syllables_per_line_en", PAIR) == 4.0
    assert pooled("syllables_per_line_en", [RHYMED, PAIR]) == pytest.approx(28 / 6)  # per line, not per poem (4.5)
    hugo = "Demain, dès l'aube, à l'heure où blanchit la campagne,\nLes roses fleurissent\n"
    assert per_poem("syllables_per_line_fr", hugo) == pytest.approx((12 + 5) / 2)
    assert direction("syllables_per_line_en") is None  # no better direction: no arrow, no best in the table
    assert measures.syllables_per_line(["\n\n"], "en") != measures.syllables_per_line(["\n\n"], "en")  # NaN


def write_task(tmp_path, extra: str = "", rows=("The sea at night", "A winter road", "My garden", "Le vent")) -> str:
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"input": r}) + "\n" for r in rows), encoding="utf-8")
    spec = tmp_path / "verse.yaml"
    spec.write_text(
        "name: verse\ndata: prompts.jsonl\n"
        "metrics: [rhyme_rate_en, distinct_1, distinct_2, syllables_per_line_en]\n" + extra,
        encoding="utf-8",
    )
    return str(spec)


def test_a_task_of_prompts_only(tmp_path):
    task = load_task(write_task(tmp_path, "metric_args: {scheme: ABAB}\n"))
    assert task.metric_args == {"scheme": "ABAB"} and task.reference(task.rows[0]) == ""
    scores = task.evaluate([RHYMED, HALF], task.rows[:2])
    assert scores["rhyme_rate_en"] == 0.0  # ABAB, from the task's metric_args
    assert scores["syllables_per_line_en"] == pytest.approx((6 + 6 + 4 + 4 + 4 + 4 + 4 + 4) / 8)
    with pytest.raises(LmforgeError, match="no metric of the task takes 'schem'; did you mean 'scheme'"):
        load_task(write_task(tmp_path, "metric_args: {schem: ABAB}\n"))
    # a metric that compares with a reference still needs the rows' outputs
    (tmp_path / "t.yaml").write_text("data: prompts.jsonl\nmetrics: [rouge1, distinct_2]\n", encoding="utf-8")
    with pytest.raises(LmforgeError, match="'output' must be a string"):
        load_task(str(tmp_path / "t.yaml"))


def memorised_poet(tiny_model_dir, tmp_path, prompt: str, poem: str):
    """The tiny model after learning by heart that ``poem`` (then the end of text) follows ``prompt``."""
    import torch

    from lmforge.data.examples import encode_prompt
    from lmforge.model import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(str(tiny_model_dir))
    ids = encode_prompt(prompt, tok) + tok(poem, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    x = torch.tensor([ids])
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = tmp_path / "poet"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_lmforge_eval_reports_the_verse_columns(tiny_model_dir, tmp_path, capsys, one_thread):
    poet = memorised_poet(tiny_model_dir, tmp_path, "The sea at night\n", LEARNED)
    out = tmp_path / "report"
    task = write_task(tmp_path, rows=["The sea at night"] * 2)  # the prompt twice: the same quatrain twice
    assert main(["eval", str(poet), "--task", task, "--max-new-tokens", "96", "--out", str(out)]) == 0
    (row,) = json.loads((out / "eval.json").read_text())["results"]
    comps = [json.loads(line)["completion"] for line in (out / "completions.jsonl").open()]
    assert [c.strip() for c in comps] == [LEARNED.strip()] * 2  # the quatrain learned by heart
    assert row["rhyme_rate_en"] == 1.0  # mat/fat, sun/fun in both samples
    assert row["syllables_per_line_en"] == 5.0  # 6, 6, 4, 4
    # 19 words a quatrain, 18 distinct ("the" twice; "The" differs), twice: 18 of 38; its 18 bigrams are distinct
    assert row["distinct_1"] == pytest.approx(18 / 38) and row["distinct_2"] == pytest.approx(18 / 36)
    shown = capsys.readouterr().out
    assert "| rhyme_rate_en ↑ | distinct_1 ↑ | distinct_2 ↑ | syllables_per_line_en |" in shown
