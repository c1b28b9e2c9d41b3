"""``lmforge demo``: the whole path in a few minutes, offline, on the embedded public-domain verse.

Trains a BPE tokenizer and a small Llama poet on the packaged corpus, then prints poems at
temperatures 0.1, 0.4 and 1.0. The run folder is an ordinary lmforge run (``runs/demo``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from lmforge.core.config import load_config
from lmforge.data.corpus import load_default_corpus
from lmforge.generate import GenerationSettings, generate
from lmforge.model import load_model_and_tokenizer
from lmforge.train.run import pretrain

# Why these values: ~3M parameters and 128-token context train at several thousand tokens/s on
# two cores, so ~3.5 minutes of training sees ~1M tokens: enough for words, rhyme-like line
# endings and stanza breaks. A 512-token vocabulary keeps whole common words as single tokens. The rate follows
# the clock (warmup, stable, then the last 30% of the 210 s decays): at this size the run is far from
# converged, so a rate kept high longer learns more than a cosine that spends half the budget decaying
# (benchmarks/demo_schedule.py; docs/results.md).
DEMO = {
    "name": "demo",
    "tokenizer": {"vocab_size": 512},
    "model": {"preset": "3m", "context": 128},
    "train": {
        "batch_size": 16,
        "lr": 2e-3,
        "lr_scheduler": "wsd",
        "decay_ratio": 0.3,
        "warmup_steps": 30,
        "max_steps": 2000,
        "max_time_s": 210,
        "eval_every": 200,
        "eval_batches": 4,
        "save_every": 400,
        "log_every": 20,
    },
    "sample": {"prompts": ["The "], "max_new_tokens": 120, "temperature": 0.8, "every": 400},
}
TEMPERATURES = (0.1, 0.4, 1.0)


def demo(overrides: list[str] = (), prompt: str = "The ") -> Path:
    """Trains the demo poet, prints poems at three temperatures; returns the run folder."""
    text = load_default_corpus()
    corpus = Path(tempfile.mkdtemp(prefix="lmforge-demo-")) / "poetry.txt"
    corpus.write_text(text, encoding="utf-8")
    cfg = load_config(None, [f"data.train={corpus}", *overrides], base=DEMO)
    print(f"lmforge demo: {len(text) / 1e6:.2f} MB of public-domain verse (see lmforge/data/corpus/LICENSE.md)")
    run_dir = pretrain(cfg)
    model, tokenizer = load_model_and_tokenizer(run_dir / "model")
    for t in TEMPERATURES:
        s = GenerationSettings(max_new_tokens=200, temperature=t, seed=cfg.seed, stop=("\n\n\n",))
        poem = generate(model, tokenizer, [prompt], s)[0]
        print(f"\n=== temperature {t} ===\n{prompt}{poem.rstrip()}")
    print(f"\nrun folder: {run_dir} (load it with AutoModelForCausalLM.from_pretrained('{run_dir / 'model'}'))")
    print(f"TensorBoard: tensorboard --logdir {cfg.log_dir}")
    return run_dir
