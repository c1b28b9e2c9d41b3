"""examples/cantos/make_repeats.py: every line is written twice, numerals are right, the corpus is reproducible."""

from conftest import example_module

rep = example_module("cantos/make_repeats.py")


def test_every_line_is_followed_by_itself_and_holds_numerals():
    text = rep.repeated_lines(["alpha", "beta", "gamma"], chars=5000, seed=1)
    blocks = text.split("\n\n")[:-1]
    assert len(blocks) > 10 and len(text) >= 5000
    for b in blocks:
        first, second = b.split("\n")
        assert first == second and 5 <= len(first.split()) <= 40
    items = text.split()
    assert any(i.isdigit() for i in items) and any(set(i) <= set("IVXLC") for i in items)


def test_roman_numerals_by_hand():
    assert [rep.to_roman(n) for n in (4, 9, 14, 40, 94, 120)] == ["IV", "IX", "XIV", "XL", "XCIV", "CXX"]


def test_same_seed_same_corpus(tmp_path):
    words = tmp_path / "w.txt"
    words.write_text("one two three four", encoding="utf-8")
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    rep.main([str(words), "--out", str(a), "--chars", "2000"])
    rep.main([str(words), "--out", str(b), "--chars", "2000"])
    assert a.read_text() == b.read_text() != rep.repeated_lines(["one", "two", "three", "four"], 2000, seed=1)
