"""Generation speed: lmforge generate, Hugging Face ``generate`` with its defaults, and llama.cpp on the exported
GGUF, side by side on the same random-weight models and prompts.

    python benchmarks/generate_speed.py                          # 1m, 10m, 40m presets; batch 1 and 8
    python benchmarks/generate_speed.py --presets 1m --new-tokens 64 --repeats 1
    python benchmarks/generate_speed.py --no-lean --out benchmarks/out/generate_speed_before.json   # before
    python benchmarks/generate_speed.py --dtypes auto                   # lmforge in the model's fp32 only

lmforge runs once per ``--dtypes`` entry (default: ``auto``, the model's fp32, and ``bf16``, a cast copy
decoded with oneDNN's bf16 kernels: ``GenerationSettings.dtype``); the copy is made in the warm-up, once per
model, as ``lmforge generate --dtype bf16`` makes it once per loaded model. Half-precision arms decode
slightly different greedy tokens: their rows report how many tokens equal the fp32 arm's.

Greedy decoding of ``--new-tokens`` tokens per prompt (a row's tokens counted up to its EOS: random weights
rarely emit it, and all three decode the same greedy tokens). Timings include tokenizing and decoding the
text, as a caller sees them (lmforge: ``generate``'s steps, ``prompt_ids`` then ``generate_ids``); the median
of ``--repeats`` runs after a warm-up. llama.cpp (llama-cpp-python) gets the same thread count; its Python
API generates one sequence at a time, so its batch of 8 is eight prompts one after another.

Two rates per engine: tokens per wall-clock second, and tokens per CPU-second of this process (all three
run in it, llama.cpp's threads too), steadier when other work shares the machine.

Prints a table and writes JSON to benchmarks/out/generate_speed.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, machine  # noqa: E402

from lmforge.data.corpus import load_default_corpus  # noqa: E402
from lmforge.generate import GenerationSettings, generate_ids, prompt_ids  # noqa: E402
from lmforge.generate.precision import CHOICES  # noqa: E402

PROMPTS = [
    "The sea is calm tonight,",
    "Shall I compare thee to",
    "I wandered lonely as a",
    "Because I could not stop",
    "Tiger, tiger, burning bright",
    "Whose woods these are I",
    "Do not go gentle into",
    "Hope is the thing with",
]


def build(preset: str, vocab: int, folder: Path):
    from lmforge.core.config import ModelConfig
    from lmforge.export import export_gguf
    from lmforge.model import build_model
    from lmforge.model.tokenizer import train_tokenizer

    tok = train_tokenizer([load_default_corpus()[:300_000]], vocab_size=vocab)
    model = build_model(ModelConfig(preset=preset, context=512), tok, seed=0).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    export_gguf(folder, folder / "model.gguf", "f16")
    return model, tok, folder / "model.gguf"


def counted(rows: list[list[int]], eos: int) -> int:
    return sum(r.index(eos) + 1 if eos in r else len(r) for r in rows)


def run_lmforge(model, tok, prompts, n, dtype="auto", ids_out=None, compile=False):
    """``generate``'s own steps (prompt ids, one batch through ``generate_ids``, text), counting the ids."""
    s = GenerationSettings(max_new_tokens=n, temperature=0, batch_size=len(prompts), dtype=dtype, compile=compile)
    new = generate_ids(model, tok, prompt_ids(tok, prompts), s, n).tolist()
    if ids_out is not None:
        ids_out[:] = new
    return counted(new, tok.eos_token_id), [tok.decode(r, skip_special_tokens=True) for r in new]


def arm(dtype: str, compiled: bool = False) -> str:
    return ("lmforge" if dtype == "auto" else f"lmforge_{dtype}") + ("_compiled" if compiled else "")


def agreement(a: list[list[int]], b: list[list[int]]) -> float:
    """The share of greedy token positions where two runs chose the same token."""
    pairs = [(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)]
    return sum(x == y for x, y in pairs) / max(len(pairs), 1)


@torch.no_grad()
def run_hf(model, tok, prompts, n):
    """``model.generate`` with its defaults (greedy, dynamic cache), as a Hugging Face user calls it."""
    enc = tok([tok.bos_token + p for p in prompts], return_tensors="pt", padding=True, padding_side="left")
    out = model.generate(**enc, max_new_tokens=n, pad_token_id=tok.pad_token_id)
    new = out[:, enc["input_ids"].shape[1] :].tolist()
    return counted(new, tok.eos_token_id), [tok.decode(r, skip_special_tokens=True) for r in new]


def run_llama(llm, prompts, n):
    tokens, texts = 0, []
    for p in prompts:
        out = llm.create_completion(p, max_tokens=n, temperature=0.0)
        tokens += out["usage"]["completion_tokens"]
        texts.append(out["choices"][0]["text"])
    return tokens, texts


def timed(fn, repeats: int) -> tuple[float, float, int, list[str]]:
    """(median tokens per wall second, per CPU second, tokens, texts) of ``repeats`` runs after a warm-up."""
    fn()
    runs = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        tokens, texts = fn()
        runs.append((tokens / (time.perf_counter() - t0), tokens / (time.process_time() - c0), tokens, texts))
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), runs[0][2], runs[0][3]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["1m", "10m", "40m"])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch and llama.cpp threads (1: steadiest when shared)")
    p.add_argument("--no-llama-cpp", action="store_true", help="skip llama.cpp (llama-cpp-python not installed)")
    p.add_argument(
        "--no-lean", action="store_true", help="lmforge through Hugging Face generate, as before its own decoding loop"
    )
    p.add_argument(
        "--dtypes",
        nargs="+",
        default=["auto", "bf16"],
        choices=CHOICES,
        help="lmforge arms: auto (the model's fp32) and half-precision copies (lmforge generate --dtype)",
    )
    p.add_argument(
        "--compile", action="store_true", help="also each dtype compiled (lmforge generate --compile; warm-up compiles)"
    )
    p.add_argument("--out", default=str(OUT / "generate_speed.json"))
    args = p.parse_args()
    kinds = [(d, False) for d in args.dtypes] + ([(d, True) for d in args.dtypes] if args.compile else [])
    if args.no_lean:
        import lmforge.generate.generation as generation

        generation.supports = lambda model: False
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for preset in args.presets:
        with tempfile.TemporaryDirectory() as tmp:
            model, tok, gguf_path = build(preset, args.vocab_size, Path(tmp))
            llm = None
            if not args.no_llama_cpp:
                import llama_cpp

                llm = llama_cpp.Llama(str(gguf_path), n_ctx=1024, n_threads=args.threads, seed=0, verbose=False)
            for bs in args.batch_sizes:
                prompts = (PROMPTS * bs)[:bs]
                ids = {arm(d, c): [] for d, c in kinds}
                engines = {
                    arm(d, c): partial(run_lmforge, model, tok, prompts, args.new_tokens, d, ids[arm(d, c)], c)
                    for d, c in kinds
                }
                engines["hf_generate"] = partial(run_hf, model, tok, prompts, args.new_tokens)
                if llm is not None:
                    engines["llama_cpp"] = partial(run_llama, llm, prompts, args.new_tokens)
                row = {"preset": preset, "batch_size": bs, "params": sum(x.numel() for x in model.parameters())}
                texts = {}
                for name, fn in engines.items():
                    t0 = time.perf_counter()
                    fn()  # the warm-up: a compiled arm compiles here
                    row[f"{name}_warmup_s"] = time.perf_counter() - t0
                    rate, cpu_rate, row[f"{name}_tokens"], texts[name] = timed(fn, args.repeats)
                    row[f"{name}_tokens_per_s"], row[f"{name}_tokens_per_cpu_s"] = rate, cpu_rate
                first = arm(*kinds[0])
                for d, c in kinds:
                    a = arm(d, c)
                    for other, key in (("hf_generate", "hf"), ("llama_cpp", "llama_cpp")):
                        if other in texts:
                            row[f"{a}_vs_{key}"] = row[f"{a}_tokens_per_s"] / row[f"{other}_tokens_per_s"]
                            row[f"{a}_vs_{key}_cpu"] = row[f"{a}_tokens_per_cpu_s"] / row[f"{other}_tokens_per_cpu_s"]
                    if a != first:
                        row[f"{a}_greedy_agreement"] = agreement(ids[first], ids[a])
                row["same_text_as_hf"] = texts[first] == texts["hf_generate"]
                if llm is not None:
                    row["llama_cpp_same_text"] = texts["llama_cpp"] == texts[first]
                rows.append(row)
                print(json.dumps(row), flush=True)
    table(rows, [arm(d, c) for d, c in kinds])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "args": vars(args), "rows": rows}, indent=2))
    print(f"\nwritten: {out}")


def table(rows: list[dict], arms: list[str]) -> None:
    """Tokens/s per engine and each lmforge arm's ratio to HF generate and llama.cpp, wall clock and CPU."""
    nan = float("nan")
    names = [*arms, "hf_generate", "llama_cpp"]
    for unit, suffix in (("tokens/s (wall clock)", ""), ("tokens per CPU-second", "_cpu")):
        per = "_tokens_per_cpu_s" if suffix else "_tokens_per_s"
        print(f"\n{unit}")
        ratios = [f"{a} vs {o}" for a in arms for o in ("HF", "llama.cpp")]
        print(f"{'preset':>6} {'batch':>5}", *(f"{n:>13}" for n in names), *(f"{r:>22}" for r in ratios))
        for r in rows:
            rates = (f"{r.get(n + per, nan):>13.0f}" for n in names)
            vs = (f"{r.get(f'{a}_vs_{o}{suffix}', nan):>21.2f}x" for a in arms for o in ("hf", "llama_cpp"))
            print(f"{r['preset']:>6} {r['batch_size']:>5}", *rates, *vs)
    for r in rows:
        agree = {k: round(v, 3) for k, v in r.items() if k.endswith("_greedy_agreement")}
        if agree:
            print(r["preset"], r["batch_size"], "greedy tokens equal to the first arm's:", agree)


if __name__ == "__main__":
    main()
