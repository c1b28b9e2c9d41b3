"""Every shipped recipe validates, names its run after its file, and points at data that exists.

Recipes are recipes/*.yaml and the run configs of examples/*/ (every YAML there but a task.yaml).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.core.config import load_config
from lmforge.model import PRESETS
from lmforge.scoring.tasks import load_task
from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
TASK_FILES = sorted((ROOT / "examples").glob("*/task.yaml"))
RECIPES = sorted((ROOT / "recipes").glob("*.yaml")) + sorted(
    p for p in (ROOT / "examples").glob("*/*.yaml") if p.name != "task.yaml"
)


def _id(p: Path) -> str:
    return str(p.relative_to(ROOT))


def test_there_are_recipes():
    assert RECIPES, f"no recipes in {ROOT / 'recipes'}"
    assert any(p.parent.parent.name == "examples" for p in RECIPES), "no example recipes found"
    assert TASK_FILES, "no examples/*/task.yaml"


@pytest.mark.parametrize("path", RECIPES, ids=_id)
def test_recipe_validates(path):
    cfg = load_config(path)
    # one recipe, one run folder: runs/<name> of two recipes must not collide
    assert cfg.name == path.stem
    assert cfg.model.preset is None or cfg.model.preset in PRESETS
    task = cfg.train.eval_task
    if task and task.endswith((".yaml", ".yml")):  # run from the checkout's root, as the data paths are
        assert (ROOT / task).is_file(), f"{_id(path)}: train.eval_task {task} not found"


def test_run_names_are_unique():
    names = [load_config(p).name for p in RECIPES]
    assert len(names) == len(set(names))


def _reference_paths(path: Path) -> list[str]:
    cfg = load_config(path)
    sources = list(cfg.data.train) + list(cfg.data.val) + [s for st in cfg.stages for s in st.data.train]
    return [s.path for s in sources if s.path.startswith("../shared/data/")]


@pytest.mark.parametrize("path", [p for p in RECIPES if _reference_paths(p)], ids=_id)
def test_recipe_reference_data_exists(path):
    """Paths into ../shared/data resolve from the checkout's root, where recipes are run."""
    if not SHARED.is_dir():
        pytest.skip(f"reference data {SHARED} is absent")
    for p in _reference_paths(path):
        assert (ROOT / p).is_file(), f"{_id(path)}: {p} not found"


@pytest.mark.parametrize("path", TASK_FILES, ids=_id)
def test_example_task_reads_its_reference_data(path):
    """A task file's data path is relative to it; the Cantos rows split 65 / 16 as docs/results.md reports."""
    if not SHARED.is_dir():
        pytest.skip(f"reference data {SHARED} is absent")
    task = load_task(str(path))
    assert task.rows
    if path.parent.name == "cantos":
        assert (len(task.rows), len(task.split("train").rows), len(task.split("test").rows)) == (81, 65, 16)
