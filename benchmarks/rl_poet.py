"""Does RL make a poet rhyme, without turning its verse to noise? Before and after a fixed number of steps.

Samples N completions of the recipe's prompts at temperature 0.8 from the base and from the trained model and
reports the share of line pairs that rhyme as the scheme asks (the first quatrain's complete lines), any-pair
rhyme, distinct-2 (diversity across samples), self-BLEU-2, the share of words the base's corpus holds (known
words: invented ones are the cheap way to rhyme) and the *base* model's perplexity of the samples (fluency);
then quotes quatrains. The run is the real command: ``lmforge rl RECIPE model.base=BASE ...``.

    python benchmarks/rl_poet.py --base runs/demo --recipe recipes/rl-poet-en.yaml --lang en
    python benchmarks/rl_poet.py --base runs/poet-fr-tiny --recipe recipes/rl-poet-fr.yaml --lang fr
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, machine  # noqa: E402

from lmforge.core.config import load_config  # noqa: E402
from lmforge.data.examples import encode_prompt  # noqa: E402
from lmforge.model import load_model_and_tokenizer  # noqa: E402
from lmforge.rewards.lexicon import known_share, lexicon  # noqa: E402
from lmforge.rewards.phonetics import last_word, rhyme_keys  # noqa: E402
from lmforge.rewards.verse import complete_lines, quatrains, rhyme_counts  # noqa: E402
from lmforge.train.rollouts import distinct_n, sample  # noqa: E402


def first_quatrain(text: str) -> str:
    q = quatrains(complete_lines(text))
    return "\n".join(q[0]) if q else ""


def rhyme_sounds(quats: list[str], lang: str) -> tuple[int, float]:
    """How many different rhyme sounds the quatrains' line ends use, and the share of the commonest: a poet
    that rhymes every line on one sound (-é, -ée, -és) scores high on rhyme and on distinct-n alike."""
    sounds: Counter = Counter()
    for q in quats:
        for line in q.split("\n"):
            word = last_word(line)
            if word:
                keys = rhyme_keys(word, lang)
                sounds[keys[0] if keys else word] += 1
    total = sum(sounds.values())
    return len(sounds), (sounds.most_common(1)[0][1] / total if total else 0.0)


def self_bleu2(texts: list[str]) -> float:
    """Mean over samples of the bigram precision (BLEU-2 without brevity penalty) against all other samples."""
    grams = [Counter(zip(t.split(), t.split()[1:])) for t in texts]
    scores = []
    for i, g in enumerate(grams):
        if not g:
            continue
        others: Counter = Counter()
        for j, h in enumerate(grams):
            if j != i:
                others |= h
        scores.append(sum(min(c, others[k]) for k, c in g.items()) / sum(g.values()))
    return sum(scores) / max(len(scores), 1)


@torch.no_grad()
def measure(
    model_dir: Path,
    base_dir: Path,
    prompts: list[str],
    n: int,
    max_new: int,
    lang: str,
    scheme: str,
    known: frozenset,
    seed: int = 1234,
):
    model, tok = load_model_and_tokenizer(model_dir)
    base, _ = load_model_and_tokenizer(base_dir)
    settings = argparse.Namespace(temperature=0.8, top_k=None, top_p=None, max_new_tokens=max_new)
    ids = [encode_prompt(prompts[i % len(prompts)], tok) for i in range(n)]
    outs = sample(model, tok, ids, 1, settings, seed=seed)
    texts = [tok.decode(o, skip_special_tokens=True) for o in outs]
    quats = [first_quatrain(prompts[i % len(prompts)] + t) for i, t in enumerate(texts)]
    hit = asked = any_hit = any_asked = 0
    for q in quats:
        h, a = rhyme_counts(q, lang, scheme)
        hit, asked = hit + h, asked + a
        h, a = rhyme_counts(q, lang, "any")
        any_hit, any_asked = any_hit + h, any_asked + a
    nll = count = 0.0
    for p, o in zip(ids, outs):  # the base model's perplexity of the sampled completions
        x = torch.tensor([p + o])
        logp = base(input_ids=x).logits[0, :-1].float().log_softmax(-1)
        tgt = x[0, 1:]
        tok_logp = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)[len(p) - 1 :]
        nll, count = nll - float(tok_logp.sum()), count + len(o)
    n_sounds, top_sound = rhyme_sounds(quats, lang)
    return {
        "rhyme_rate": hit / max(asked, 1),
        "rhyme_sounds": n_sounds,
        "top_sound_share": top_sound,
        "pairs_asked": asked,
        "any_pair_rate": any_hit / max(any_asked, 1),
        "distinct_2": distinct_n(texts),
        "self_bleu_2": self_bleu2(texts),
        "known_words": sum(known_share(t, known) for t in texts) / max(len(texts), 1),
        "base_perplexity": math.exp(nll / max(count, 1)),
        "quatrains": [q for q in quats if q.count("\n") == 3][:4],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--lang", default="en")
    ap.add_argument("--scheme", default="AABB")
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--name", default=None)
    ap.add_argument("--eval-tokens", type=int, default=None, help="new tokens per sample (default: rl.max_new_tokens)")
    ap.add_argument("--after", default=None, help="measure this trained model against the base; no RL run")
    ap.add_argument(
        "--lexicon",
        default=None,
        help="the words counted as known (a corpus file; default: the demo corpus for en, French verse for fr)",
    )
    ap.add_argument(
        "--seed", type=int, default=1234, help="the sampling seed (another one checks a step chosen on the first)"
    )
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    name = args.name or Path(args.recipe).stem
    cfg = load_config(args.recipe, [f"model.base={args.base}", f"name={name}", *args.overrides])
    prompts = [p.replace("\\n", "\n") for p in cfg.rl.prompts]
    max_new = args.eval_tokens or cfg.rl.max_new_tokens
    t0 = time.time()
    french = Path(__file__).resolve().parents[2] / "shared" / "data" / "french_poetry.txt"
    known = lexicon(args.lexicon or ("demo" if args.lang == "en" else str(french)))
    before = measure(
        Path(args.base), Path(args.base), prompts, args.samples, max_new, args.lang, args.scheme, known, args.seed
    )
    cmd = ["lmforge", "rl", args.recipe, f"model.base={args.base}", f"name={name}", *args.overrides]
    t1 = time.time()
    if args.after:  # a run made earlier: only the measurement
        cmd, trained = ["(measured)", args.after], Path(args.after)
    else:
        print(" ".join(cmd), flush=True)
        subprocess.run([sys.executable, "-m", "lmforge.cli", *cmd[1:]], check=True)  # this interpreter's lmforge
        trained = cfg.run_dir / "model"
    rl_s = time.time() - t1
    after = measure(trained, Path(args.base), prompts, args.samples, max_new, args.lang, args.scheme, known, args.seed)
    keys = ["rhyme_rate", "any_pair_rate", "rhyme_sounds", "top_sound_share", "distinct_2", "self_bleu_2"]
    keys += ["known_words", "base_perplexity", "pairs_asked"]
    print(f"\n{'':<18}{'before':>10}{'after':>10}")
    for k in keys:
        print(f"{k:<18}{before[k]:>10.3f}{after[k]:>10.3f}")
    for label, r in (("before", before), ("after", after)):
        print(f"\n--- {label} ---")
        for q in r["quatrains"][:2]:
            print(q + "\n")
    out = {
        "command": " ".join(cmd),
        "base": args.base,
        "steps": cfg.train.max_steps,
        "rl_seconds": rl_s,
        "before": before,
        "after": after,
        "seconds": time.time() - t0,
        "machine": machine(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"rl_poet_{name}.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
