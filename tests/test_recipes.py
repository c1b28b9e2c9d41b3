"""Every shipped recipe validates, names its run after its file, and points at data that exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.core.config import load_config
from lmforge.model import PRESETS
from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert RECIPES, f"no recipes in {ROOT / 'recipes'}"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(path):
    cfg = load_config(path)
    # one recipe, one run folder: runs/<name> of two recipes must not collide
    assert cfg.name == path.stem
    assert cfg.model.preset is None or cfg.model.preset in PRESETS


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_reference_data_exists(path):
    """Paths into ../shared/data resolve from the checkout's root, where recipes are run."""
    cfg = load_config(path)
    sources = list(cfg.data.train) + list(cfg.data.val) + [s for st in cfg.stages for s in st.data.train]
    shared = [s.path for s in sources if s.path.startswith("../shared/data/")]
    if not shared:
        pytest.skip("no reference data used")
    if not SHARED.is_dir():
        pytest.skip(f"reference data {SHARED} is absent")
    for p in shared:
        assert (ROOT / p).is_file(), f"{path.name}: {p} not found"
