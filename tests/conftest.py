"""Shared fixtures: tiny tokenizers and models built in the test itself (no network)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATA = Path(__file__).resolve().parent / "data"
"""Small files written for the tests (tests/data): the tests never need ../shared/data."""

VERSE = (
    "Le vent se lève, il faut tenter de vivre.\n"
    "The sea is calm tonight, the tide is full.\n"
    "Demain, dès l'aube, à l'heure où blanchit la campagne,\n"
    "Je partirai. Vois-tu, je sais que tu m'attends.\n"
    "Shall I compare thee to a summer's day?\n"
    'Answer: {"references": [{"canto": 2, "lines": [-1]}]}\n'
)


def shared_file(name: str) -> Path:
    p = SHARED / name
    if not p.is_file():
        pytest.skip(f"reference data {p} is absent (it lives in ../shared/data beside the checkout)")
    return p


def example_module(path: str):
    """The script ``examples/<path>`` as a module, loaded from that file (examples/ is no package).

    Its folder is first on ``sys.path`` while it loads, as when ``python examples/<path>`` runs it, so it
    finds its sibling modules by name; a second call returns the same module.
    """
    file = (ROOT / "examples" / path).resolve()
    loaded = sys.modules.get(file.stem)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == file:
        return loaded
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[file.stem] = module
    sys.path.insert(0, str(file.parent))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[file.stem]
        raise
    finally:
        sys.path.remove(str(file.parent))
    return module


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run several times faster on one thread, above all on a busy machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    from lmforge.model.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tok")
    return train_tokenizer([VERSE * 20], vocab_size=128, out_dir=out)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A saved tiny Llama + tokenizer folder: the same loading path as a hub id."""
    from lmforge.core.config import ModelConfig
    from lmforge.model import build_model

    out = tmp_path_factory.mktemp("tiny_model")
    model = build_model(ModelConfig(preset="tiny"), tiny_tokenizer, seed=0)
    model.save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    return out
