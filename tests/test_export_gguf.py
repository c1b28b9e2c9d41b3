"""``lmforge export gguf`` against llama.cpp itself (``llama-cpp-python``): for a demo-like poet, a merged LoRA
run and a 100-token vocabulary, llama.cpp tokenizes as the Hugging Face tokenizer does, continues greedily
with the same tokens, computes the same logits (f16) and nearly the same argmaxes (q8_0), and stops at EOS."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lmforge import cli
from lmforge.core.config import load_config
from lmforge.data.corpus import load_default_corpus
from lmforge.generate import GenerationSettings, generate, prompt_ids
from lmforge.model import load_model_and_tokenizer
from tests.conftest import VERSE
from tests.test_finetune import QA, overrides, write_qa

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]
llama_cpp = pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed (.ci/run builds it: pip install llama-cpp-python)"
)
NEW = 32  # greedy tokens compared
# the fine-tune's template: characters of the demo corpus only ("#" would be <unk> there, and dropped by llama.cpp)
TEMPLATE = 'Question: "{input}"\\n Answer: {output}'


def prompt_of(question: str) -> str:
    return f'Question: "{question}"\n Answer: '


def _pretrain(tmp, name: str, text: str, vocab: int, steps: int, context: int):
    from lmforge.train.run import pretrain

    data = tmp / f"{name}.txt"
    data.write_text(text, encoding="utf-8")
    over = {
        "name": name,
        "out_dir": tmp / "runs",
        "log_dir": tmp / "logs",
        "data.train": data,
        "tokenizer.vocab_size": vocab,
        "model.preset": "tiny",
        "model.context": context,
        "train.precision": "fp32",
        "train.batch_size": 8,
        "train.lr": 1e-2,
        "train.warmup_steps": 5,
        "train.max_steps": steps,
        "train.eval_every": 100000,
        "train.save_every": 100000,
        "sample.every": 100000,
    }
    return pretrain(load_config(None, [f"{k}={v}" for k, v in over.items()]), quiet=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> (run folder, a text the prompts come from): the three models llama.cpp must reproduce."""
    from lmforge.train.run import finetune

    tmp = tmp_path_factory.mktemp("gguf_runs")
    verse = load_default_corpus()[:200_000]
    demo = _pretrain(tmp, "demo", verse, vocab=512, steps=150, context=128)
    qa = overrides(
        tmp,
        "lora",
        demo / "model",
        write_qa(tmp),
        **{
            "lora.method": "lora",
            "lora.r": 8,
            "train.lr": 1e-2,
            "train.max_steps": 80,
            "data.template": f"'{TEMPLATE}'",
        },
    )
    lora = finetune(load_config(None, qa), quiet=True)
    tiny = _pretrain(tmp, "tiny_vocab", VERSE * 40, vocab=100, steps=120, context=128)
    return {"demo": (demo, verse), "lora": (lora, VERSE), "tiny_vocab": (tiny, VERSE)}


@pytest.fixture(scope="module")
def ggufs(runs, tmp_path_factory):
    """(name, type) -> GGUF path, written by the real CLI."""
    out = tmp_path_factory.mktemp("gguf")
    files = {}
    for name, (run, _) in runs.items():
        for kind in ("f16", "q8_0"):
            files[name, kind] = out / f"{name}-{kind}.gguf"
            assert cli.main(["export", "gguf", str(run), "--out", str(files[name, kind]), "--type", kind]) == 0
    return files


def _llama(path):
    return llama_cpp.Llama(model_path=str(path), n_ctx=256, logits_all=True, n_threads=1, seed=0, verbose=False)


def _hf(run):
    from lmforge.export import merged_model

    model, tok = merged_model(run, dtype=torch.float32)
    return model, tok


def prompts(text: str, tok, n: int = 20, seed: int = 0) -> list[str]:
    """``n`` prompts from ``text``: spans of it, then the same with whitespace runs, contractions and digits that
    split differently under other pre-tokenizers; only characters of the tokenizer's alphabet."""
    rng = random.Random(seed)
    vocab = tok.get_vocab()
    keep = lambda s: "".join(c for c in s if c in vocab)  # noqa: E731
    out = []
    for i in range(n):
        start = rng.randrange(0, len(text) - 80)
        span = text[start : start + rng.randrange(8, 60)]
        if i % 4 == 1:
            span = span.replace(" ", "  ", 2) + "\n\n  "
        elif i % 4 == 2:
            span = f'{span} l\'s 1917, 22: {{"t": [3]}}\t'
        elif i % 4 == 3:
            span = " " + span.replace("\n", " \n\t", 1)
        out.append(keep(span))
    return out


@pytest.mark.parametrize("name", ["demo", "lora", "tiny_vocab"])
def test_llama_cpp_tokenizes_as_hugging_face(runs, ggufs, name):
    run, text = runs[name]
    _, tok = _hf(run)
    llm = _llama(ggufs[name, "f16"])
    ps = prompts(text, tok)
    assert len(set(ps)) == 20 and any(any(ord(c) > 127 for c in p) for p in ps)  # multi-byte characters too
    for p, ids in zip(ps, prompt_ids(tok, ps)):
        assert llm.tokenize(p.encode("utf-8"), add_bos=True, special=True) == ids, repr(p)
        assert llm.detokenize(ids[1:]).decode("utf-8") == p  # and back


def _greedy_llama(llm, ids: list[int], n: int) -> list[int]:
    llm.reset()
    llm.eval(ids)
    new = []
    for _ in range(n):
        new.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([new[-1]])
    return new


def _greedy_hf(model, ids: list[int], n: int) -> tuple[list[int], torch.Tensor]:
    """n greedy tokens (EOS not special: the comparison runs to n) and the logits at each step, [n, V]."""
    seq = list(ids)
    with torch.no_grad():
        for _ in range(n):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
        logits = model(torch.tensor([seq[:-1]])).logits[0, len(ids) - 1 :]
    return seq[len(ids) :], logits


@pytest.mark.parametrize("name", ["demo", "lora", "tiny_vocab"])
def test_f16_greedy_continuation_and_logits_match(runs, ggufs, name):
    run, text = runs[name]
    model, tok = _hf(run)
    llm = _llama(ggufs[name, "f16"])
    for ids in prompt_ids(tok, prompts(text, tok, n=5, seed=1)):
        want, logits = _greedy_hf(model, ids, NEW)
        assert _greedy_llama(llm, ids, NEW) == want
        # llama.cpp's logits along the same sequence (its KV cache holds prompt + continuation)
        got = torch.from_numpy(np.array(llm.scores[len(ids) - 1 : len(ids) - 1 + NEW]))
        top = logits.argmax(-1, keepdim=True)
        torch.testing.assert_close(got.gather(-1, top), logits.gather(-1, top), atol=0.05, rtol=0.01)
        assert (got - logits).abs().max() < 0.15  # every logit, f16 weights against fp32


@pytest.mark.parametrize("name", ["demo", "lora", "tiny_vocab"])
def test_q8_0_agrees_on_greedy_tokens(runs, ggufs, name):
    run, text = runs[name]
    model, tok = _hf(run)
    llm = _llama(ggufs[name, "q8_0"])
    agree = total = 0
    for ids in prompt_ids(tok, prompts(text, tok, n=8, seed=2)):
        want, _ = _greedy_hf(model, ids, NEW)
        llm.reset()
        llm.eval(ids + want[:-1])  # teacher-forced on the fp32 model's path: one flip does not count twice
        got = np.argmax(np.array(llm.scores[len(ids) - 1 : len(ids) - 1 + NEW]), axis=-1)
        agree += int((got == np.array(want)).sum())
        total += NEW
    assert agree / total >= 0.95, f"{agree}/{total}"


def test_generation_stops_at_eos_as_lmforge_generate_does(runs, ggufs):
    run, _ = runs["lora"]
    model, tok = load_model_and_tokenizer(run)
    llm = _llama(ggufs["lora", "f16"])
    settings = GenerationSettings(max_new_tokens=NEW, temperature=0)
    stopped = 0
    for q, _ in QA:
        p = prompt_of(q)
        ours = generate(model, tok, [p], settings)[0]
        ids = torch.tensor(prompt_ids(tok, [p]))
        row = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW, do_sample=False)[0]
        theirs = llm.create_completion(p, max_tokens=NEW, temperature=0.0, repeat_penalty=1.0)["choices"][0]
        assert theirs["text"] == ours
        if tok.eos_token_id in row[ids.shape[1] :].tolist():  # lmforge stopped at EOS: llama.cpp must too
            stopped += 1
            assert theirs["finish_reason"] == "stop"
    assert stopped >= 2  # the fine-tuned model learned to end its answers: the check is not vacuous
