"""Rewards: rhyme from pronunciation (not spelling), schemes counted by hand, metre, JSON, a task's score, a
user's TRL-style function, and the weighted sum with its components."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("phonemizer")
pytest.importorskip("pronouncing")

from lmforge.core.errors import LmforgeError  # noqa: E402
from lmforge.rewards import Rewards, RewardTerm, rhyme_counts, rhyme_rate  # noqa: E402
from lmforge.rewards.phonetics import last_word, rhymes, syllables  # noqa: E402


@pytest.mark.parametrize(
    "a,b",
    [
        ("chanson", "maison"),  # -on / -son: same nasal vowel, different spelling
        ("fleurs", "pleurs"),
        ("aimée", "destinée"),
        ("amour", "toujours"),  # silent s
        ("nuit", "lui"),  # silent t
        ("poète", "tête"),
        ("temps", "printemps"),
        ("cloches", "approche"),  # open and closed o
    ],
)
def test_french_pairs_that_rhyme(a, b):
    assert rhymes(a, b, "fr")


@pytest.mark.parametrize(
    "a,b", [("chat", "chien"), ("monde", "mer"), ("femme", "ferme"), ("fils", "fille"), ("bon", "beau")]
)
def test_french_pairs_that_do_not(a, b):
    assert not rhymes(a, b, "fr")


def test_english_rhyme_by_sound_not_spelling():
    assert rhymes("day", "away", "en") and rhymes("eye", "sky", "en") and rhymes("through", "blue", "en")
    assert not rhymes("cough", "though", "en")  # spelled alike, sound apart
    assert not rhymes("love", "move", "en")
    assert rhymes("glimmerstone", "moan", "en")  # an unknown word goes to espeak-ng, with its partner
    # vowels CMUdict's entries split but speech does not: before R, and the cot-caught merger
    assert rhymes("near", "hear", "en") and rhymes("begot", "allot", "en") and not rhymes("warm", "harm", "en")


def test_english_eye_rhymes_need_the_sound_after_the_vowel():
    """Eye rhymes of English verse count when asked for: the same written ending and the same sounds after the
    stressed vowel; spelling alone (cough / though), or an inflection's -es / -ed, is not enough."""
    for a, b in [("love", "move"), ("come", "home"), ("good", "blood"), ("alone", "gone"), ("loves", "moves")]:
        assert rhymes(a, b, "en", eye=True) and not rhymes(a, b, "en")
    for a, b in [("cough", "though"), ("rules", "vales"), ("relined", "turned"), ("the", "she"), ("love", "loves")]:
        assert not rhymes(a, b, "en", eye=True)
    quatrain = "I sing of love\nand where we move\nthe night is here\nthe day is near\n"
    assert rhyme_counts(quatrain, "en", "AABB") == (2, 2)  # eye rhymes count by default in verse
    assert rhyme_counts(quatrain, "en", "AABB", eye_rhymes=False) == (1, 2)
    r = RewardTerm.make("rhyme_en", args={"scheme": "AABB", "eye_rhymes": False})
    assert r.fn(prompts=[""], completions=[quatrain]) == [0.5]


def test_assonance_partial_credit():
    from lmforge.rewards.phonetics import assonates

    assert assonates("night", "time", "en") and not rhymes("night", "time", "en")
    assert assonates("chanson", "monde", "fr") and not assonates("chat", "chien", "fr")
    poem = "I walk at night\nI lose the time\nThe sky is blue\nThe sea is green\n"
    assert rhyme_counts(poem, "en", "AABB") == (0, 2)
    assert rhyme_counts(poem, "en", "AABB", assonance=0.25) == (0.25, 2)  # night/time share AY, blue/green nothing
    r = RewardTerm.make("rhyme_en", args={"scheme": "AABB", "assonance": 0.25})
    assert r.fn(prompts=[""], completions=[poem]) == [0.125]


def test_identical_end_words_are_not_rhymes():
    assert not rhymes("amour", "amour", "fr")
    assert rhyme_counts("I love the night\nI love the night\n", "en", "AABB") == (0, 1)


def test_last_word():
    assert last_word("Demain, dès l'aube, à l'heure où blanchit la campagne,") == "campagne"
    assert last_word("  — Ô temps, suspends ton vol !") == "vol"
    assert last_word("1234 ...") == ""


QUATRAIN_ABAB = "The sun is high\nThe grass is green\nA bird flies by\nThe brightest scene\n"


def test_scheme_counts_by_hand():
    assert rhyme_counts(QUATRAIN_ABAB, "en", "ABAB") == (2, 2)
    assert rhyme_counts(QUATRAIN_ABAB, "en", "AABB") == (0, 2)
    assert rhyme_counts(QUATRAIN_ABAB, "en", "ABBA") == (0, 2)
    assert rhyme_counts(QUATRAIN_ABAB, "en", "any") == (4, 4)
    # a blank line ends a stanza: lines 2 and 3 are in different quatrains, so AABB asks one pair in each
    two = "The sun is high\nA bird flies by\n\nThe grass is green\nA tree\n"
    assert rhyme_counts(two, "en", "AABB") == (1, 2)
    assert rhyme_rate([QUATRAIN_ABAB, two], "en", "ABAB") == pytest.approx(2 / 2)  # `two` asks no ABAB pair
    with pytest.raises(LmforgeError, match="ABBA"):
        rhyme_counts(QUATRAIN_ABAB, "en", "ABC")


def test_rhyme_reward_uses_pronunciation_in_french():
    poem = "Je chante la chanson\nQui monte à la maison\nLe vent souffle la nuit\nEt rien ne dit pourquoi\n"
    r = Rewards([RewardTerm.make("rhyme_fr", args={"scheme": "AABB"})])
    total, parts = r(prompts=[""], completions=[poem])
    assert parts["rhyme_fr"] == [0.5] and total == [0.5]
    # a last line cut by the token budget ("pourq") has no end word yet: its pair is not asked
    assert r(prompts=[""], completions=[poem[:-4]])[1]["rhyme_fr"] == [1.0]


def test_syllables_alexandrine_and_english():
    hugo = "Demain, dès l'aube, à l'heure où blanchit la campagne,"
    assert syllables(hugo, "fr") == 12
    assert syllables("Je partirai. Vois-tu, je sais que tu m'attends.", "fr") == 12
    # les-ro-ses-fleu-rissent: the mute e of "roses" sounds before a consonant, "-ent" at the line end does not
    assert syllables("Les roses fleurissent", "fr") == 5
    assert syllables("Les roses", "fr") == 2
    assert syllables("Shall I compare thee to a summer's day?", "en") == 10
    r = RewardTerm.make("syllables", args={"target": 12, "lang": "fr"})
    assert r.fn(prompts=[""], completions=[hugo + "\nCourt vers\n"]) == [0.5]


def test_json_rewards():
    ok, bad = '{"a": [1, 2]}', '{"a": [1, 2'
    assert RewardTerm.make("json_valid").fn(prompts=["", ""], completions=[ok, bad]) == [1.0, 0.0]
    schema = {"type": "object", "properties": {"a": {"type": "array"}}, "required": ["a"]}
    sv = RewardTerm.make("schema_valid", args={"schema": schema}).fn
    assert sv(prompts=[""] * 3, completions=[ok, bad, '{"b": 1}']) == [1.0, 0.0, 0.0]


def test_task_score_reward_is_the_task_metric(tmp_path):
    rows = [{"input": "q1", "output": '{"x": 1, "y": 2}'}, {"input": "q2", "output": '{"x": 3}'}]
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    task = tmp_path / "task.yaml"
    task.write_text(f'name: t\ndata: {data}\nschema: {{type: object}}\nreward_metric: field_f1\nstop: ["\\n"]\n')
    fn = RewardTerm.make("score", args={"task": str(task)}).fn
    got = fn(prompts=["q1", "q2"], completions=['{"x": 1}\nmore', '{"x": 3}'], input=["q1", "q2"],
             output=[r["output"] for r in rows])  # fmt: skip
    assert got == pytest.approx([2 / 3, 1.0])  # one of two facts found (precision 1, recall 1/2)
    # the task's F1 plus a bonus for the exact answer: score twice, the second labelled, with another metric
    f1 = RewardTerm.make("score", args={"task": str(task)})
    exact = RewardTerm.make("score", 0.5, {"task": str(task), "metric": "json_em"}, label="exact")
    refs = [r["output"] for r in rows]
    total, parts = Rewards([f1, exact])(["q1", "q2"], ['{"x": 1}\nmore', '{"x": 3}'], input=["q1", "q2"], output=refs)
    assert parts["score"] == pytest.approx([2 / 3, 1.0]) and parts["exact"] == [0.0, 1.0]
    assert total == pytest.approx([2 / 3, 1.5])
    with pytest.raises(LmforgeError, match="json_em"):  # a misspelt metric is named, with the right one
        RewardTerm.make("score", args={"task": str(task), "metric": "json_emm"}).fn(
            prompts=["q1"], completions=["{}"], input=["q1"], output=[rows[0]["output"]]
        )


def test_weighted_sum_user_reward_and_errors():
    r = Rewards(
        [
            RewardTerm.make("json_valid", weight=2.0),
            RewardTerm.make("tests.user_plugins:length_reward", weight=-0.5),
        ]
    )
    total, parts = r(prompts=["", ""], completions=["{}", "not json"])
    assert parts == {"json_valid": [1.0, 0.0], "tests.user_plugins:length_reward": [2.0, 8.0]}
    assert total == pytest.approx([2.0 - 1.0, -4.0])
    with pytest.raises(LmforgeError, match="did you mean 'scheme'"):
        RewardTerm.make("rhyme_en", args={"schem": "AABB"})
    with pytest.raises(LmforgeError, match="unknown reward"):
        RewardTerm.make("rhyme_fre")
    with pytest.raises(LmforgeError, match="twice"):
        Rewards([RewardTerm.make("json_valid"), RewardTerm.make("json_valid")])
    assert Rewards([RewardTerm.make("fluency")]).needs_reference
