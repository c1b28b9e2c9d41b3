"""known_words: the share of a completion's words that a corpus holds, counted by hand; the source's rare
words left out with min_count; the embedded corpus as a source; clear errors; through the config's rewards."""

from __future__ import annotations

import pytest

from lmforge.core.errors import LmforgeError
from lmforge.core.registry import REWARDS
from lmforge.rewards import Rewards, RewardTerm
from lmforge.rewards.lexicon import known_share, lexicon, words


def test_words_split_at_apostrophes_and_keep_accents():
    assert words("L'homme, aimé… 42 fois-là!") == ["l", "homme", "aimé", "fois", "là"]


def test_share_counted_by_hand(tmp_path):
    corpus = tmp_path / "verse.txt"
    corpus.write_text("Le ciel est bleu.\nLa mer est calme, le ciel aussi.\n", encoding="utf-8")
    fn = REWARDS.get("known_words")
    out = fn(["Le ", "Le "], ["ciel est regareté", "Sttie\nSttie"], source=str(corpus))
    assert out == [pytest.approx(2 / 3), 0.0]  # ciel, est known; regareté invented; nothing known
    assert fn([""], ["42 !"], source=str(corpus)) == [0.0]  # no words: no credit
    # min_count 2: only le, ciel, est occur twice
    assert fn(["x"], ["la mer est bleue"], source=str(corpus), min_count=2) == [pytest.approx(1 / 4)]


def test_demo_corpus_is_a_source():
    known = lexicon("demo")
    assert known_share("The sea is calm, my love", known) == 1.0
    assert known_share("eternaliary imperreary", known) == 0.0


def test_errors_name_the_problem(tmp_path):
    fn = REWARDS.get("known_words")
    with pytest.raises(LmforgeError, match="needs args.source"):
        fn(["p"], ["c"])
    with pytest.raises(LmforgeError, match="not found"):
        fn(["p"], ["c"], source=str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("123 456", encoding="utf-8")
    with pytest.raises(LmforgeError, match="no words"):
        fn(["p"], ["c"], source=str(tmp_path / "empty.txt"))


def test_in_a_weighted_sum(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the sea the sky", encoding="utf-8")
    rewards = Rewards([RewardTerm.make("known_words", 2.0, {"source": str(corpus)})])
    total, parts = rewards(["The "], ["sea sky moon"])
    assert total == [pytest.approx(2 * 2 / 3)] and parts["known_words"] == [pytest.approx(2 / 3)]


def test_rhyme_paid_only_on_known_end_words(tmp_path):
    """rhyme_fr / rhyme_en with ``known_words``: a pair between made-up end words earns nothing, not even its
    assonance credit; a pair between known words earns as before."""
    pytest.importorskip("phonemizer")
    corpus = tmp_path / "fr.txt"
    corpus.write_text("Sous le ciel tout le miel, la mer amère.\n", encoding="utf-8")
    poem = "Sous le ciel\nTout le miel\nLa regareté\nSa moraté\n"
    fr = REWARDS.get("rhyme_fr")
    assert fr(["x"], [poem]) == [1.0]  # two pairs rhyme by sound
    assert fr(["x"], [poem], known_words=str(corpus)) == [0.5]  # regareté / moraté are not words of the corpus
    assonant = "Sous le ciel\nTout le miel\nLa mer\nSa regarèle\n"  # mer / regarèle share their vowel only
    assert fr(["x"], [assonant], assonance=0.25) == [0.625]
    assert fr(["x"], [assonant], assonance=0.25, known_words=str(corpus)) == [0.5]  # no credit for a made-up word
    words_en = tmp_path / "en.txt"
    words_en.write_text("the night light\n", encoding="utf-8")
    en = REWARDS.get("rhyme_en")
    assert en(["x"], ["The night\nThe light\n"], known_words=str(words_en)) == [1.0]
    assert en(["x"], ["The night\nThe blight\n"], known_words=str(words_en)) == [0.0]
    assert en(["x"], ["The night\nThe blight\n"]) == [1.0]
