"""Generated YAML configs and overrides (``key=value`` and ``--key value``) through ``load_config`` and the
real ``lmforge validate``: a config, or one line naming the file or the key; never a traceback."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import yaml
from fuzzing import CASES, any_bytes, budget, garbled, one_line, outcome, texts, time_limit
from hypothesis import given
from hypothesis import strategies as st

from lmforge.cli import main
from lmforge.core.config import RunConfig, _known_keys, load_config, reject_unused
from lmforge.core.habits import ANCHOR_KEYS, MISSING

DOTTED = _known_keys(RunConfig)
FIELDS = sorted({k.rsplit(".", 1)[-1] for k in DOTTED})
SECTIONS = sorted(RunConfig.model_fields)
RAW = [
    "2001-02-30", "2001-13-01 10:00:00", "2024-01-01", "12:30:00", "1_000", "0x1F", "0o17", "0b101", "017",
    ".inf", "-.nan", "~", "yes", "no", "on", "off", "1e400", "9" * 5000, "!!binary aGk=", "!!python/tuple [1]",
    "!!int x", "!!float", "!!set {a}", "!!omap [a: 1]", "&a 1", "*a", "*undefined", "<<: {a: 1}", "[1, [2, [3",
    "{a: 1", "'quote", '"\\xZZ"', "|", ">-", "? a", "-", "- - -", "%YAML 1.1", "---", "...", "\t1", "@x", "`x",
    "[" * 2000 + "]" * 2000, "{a: " * 1500 + "1" + "}" * 1500, "'" + "x" * 300 + "'", "",
]  # fmt: skip
"""Scalars and fragments YAML reads specially: timestamps (an impossible date), tags, anchors, nesting."""
NAMED = ("override", "config", *ANCHOR_KEYS, *MISSING)
"""What a config error names besides the file: an override, a config key, or the other tool's key it read."""

raw = st.one_of(st.sampled_from(RAW), texts.map(lambda t: t.replace("\n", " ")))
yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts, st.sampled_from(RAW)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3)),
    max_leaves=8,
)
top_keys = st.one_of(st.sampled_from(SECTIONS), st.sampled_from(sorted(ANCHOR_KEYS)), texts)
section = st.dictionaries(st.one_of(st.sampled_from(FIELDS), texts), yaml_values, max_size=4)
trees = st.dictionaries(top_keys, st.one_of(section, section, yaml_values), max_size=4)


def _dumped(tree: dict, unicode: bool) -> bytes:
    return yaml.safe_dump(tree, allow_unicode=unicode, sort_keys=False).encode("utf-8", "surrogatepass")


def _hand_written(lines: list[tuple[str, str, str]]) -> bytes:
    """``section:`` / ``  key: RAW`` lines, the values unquoted so YAML reads them its own way."""
    out = []
    for sec, key, value in lines:
        out += [f"{sec}:", f"  {key}: {value}"]
    return "\n".join(out).encode("utf-8", "surrogatepass")


hand_written = st.lists(st.tuples(st.sampled_from(SECTIONS), st.sampled_from(FIELDS), raw), min_size=1, max_size=4)
yaml_files = st.one_of(
    st.builds(_dumped, trees, st.booleans()),
    hand_written.map(_hand_written),
    hand_written.map(_hand_written),
    garbled(st.builds(_dumped, trees, st.just(True)).map(lambda b: b.decode("utf-8", "replace"))),
    any_bytes,
)
override_keys = st.one_of(st.sampled_from(DOTTED), st.sampled_from(sorted(ANCHOR_KEYS)), texts)
override_values = st.one_of(raw, texts, st.builds(lambda v: yaml.safe_dump(v).strip(), yaml_values))
overrides = st.lists(st.builds(lambda k, v: f"{k}={v}", override_keys, override_values), max_size=3)


@budget(150)
@given(yaml_files, overrides)
def test_yaml_config_and_overrides(data, items):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "run.yaml"
        p.write_bytes(data)
        cfg = outcome("config YAML", load_config, p, items, names=(str(p), *NAMED))
        if isinstance(cfg, RunConfig):
            outcome("config YAML", reject_unused, cfg, "finetune" if cfg.model.base else "pretrain")


NUMBERS = [".inf", "-.inf", ".nan", "1e400", "-1e400", "-1", "0", "1e-400", "0.5", "1.5", "auto", "true", "9" * 30]
NUMBERS += ["[]", "[1, [2]]", "{a: 1}", "{}", "null", "''", "x"]
"""Values validators trip on: infinities, NaN, 0, fractions of whole counts, huge integers, lists, maps."""


def test_every_key_with_every_odd_number():
    """Not drawn but exhaustive: each of the config's keys set to each of NUMBERS (~1,500 overrides)."""
    for key in DOTTED:
        for value in NUMBERS:
            outcome("key=value overrides", load_config, None, [f"{key}={value}"], names=NAMED)


@budget(100)
@given(overrides)
def test_overrides_alone(items):
    outcome("key=value overrides", load_config, None, items, names=NAMED)


dashed = st.lists(
    st.one_of(
        st.builds(lambda k, v: [f"--{k}", v], override_keys, override_values),
        st.builds(lambda k, v: [f"--{k}={v}"], override_keys, override_values),
        st.builds(lambda k, v: [f"{k}={v}"], override_keys, override_values),
        st.builds(lambda k: [f"--{k}"], override_keys),
    ),
    max_size=3,
).map(lambda parts: [a for part in parts for a in part])


@budget(60)
@given(dashed)
def test_lmforge_validate_with_dashed_overrides(argv):
    """The real command line: exit 0, or 2 with one line on stderr (argparse's own usage errors aside)."""
    CASES["--key value overrides (lmforge validate)"] += 1
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "run.yaml"
        p.write_text("model: {preset: tiny}\ndata: {train: corpus.txt}\n")
        err, out = io.StringIO(), io.StringIO()
        with time_limit(20), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = main(["validate", str(p), *argv])
            except SystemExit as e:  # argparse: "unrecognized arguments" and the like, with its usage
                assert e.code == 2
                return
        assert rc in (0, 2)
        said = err.getvalue().splitlines()
        errors = [line for line in said if line.startswith("lmforge validate: error:")]
        notes = [line for line in said if line.startswith("lmforge: read ")]  # a key read as lmforge's
        assert len(errors) == (rc == 2) and len(errors) + len(notes) == len(said), said
        if rc == 2:
            one_line(errors[0][len("lmforge validate: error:") :])
