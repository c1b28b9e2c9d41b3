"""Compiled decoding (``--compile``) returns the eager loop's tokens and logits: left-padded batches, seeded
sampling, a model whose weights changed after compiling (the step is remade), and a LoRA model through its
merged copy; where it cannot apply, one clear error."""

from __future__ import annotations

import shutil

import pytest
import torch

from lmforge.core.config import ModelConfig
from lmforge.core.errors import LmforgeError
from lmforge.generate import GenerationSettings, generate_ids, prompt_ids
from lmforge.generate.compiled import BUCKET, buffer_length
from lmforge.generate.decoding import decode
from lmforge.model import build_model

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None, reason="needs a C++ compiler"),
]

TEXTS = ["The sea is calm tonight,", "Je", "Shall I compare thee to a summer's day?"]


class Record:
    """An observer: the raw logits of every step."""

    def __init__(self):
        self.steps = []

    def __call__(self, ids, scores):
        self.steps.append(scores.clone())
        return scores


def _run(model, tok, compiled, **kw):
    ids = [[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    enc = tok.pad({"input_ids": ids}, padding=True, padding_side="left", return_tensors="pt")
    rec = Record()
    torch.manual_seed(kw.pop("seed", 0))
    out = decode(
        model,
        enc["input_ids"],
        enc["attention_mask"],
        20,
        pad_token_id=tok.pad_token_id,
        eos_token_id=None,
        logits_processor=[rec],
        compiled=compiled,
        **kw,
    )
    return out, torch.stack(rec.steps)


def test_buffer_lengths_are_shared_by_nearby_lengths():
    assert buffer_length(1) == buffer_length(BUCKET) == BUCKET and buffer_length(BUCKET + 1) == 2 * BUCKET


def test_compiled_equals_eager_and_is_remade_when_weights_change(tiny_tokenizer):
    model = build_model(ModelConfig(preset="tiny", context=256), tiny_tokenizer, seed=0).eval()
    eager, eager_logits = _run(model, tiny_tokenizer, False)
    comp, comp_logits = _run(model, tiny_tokenizer, True)
    assert torch.equal(eager, comp)  # greedy, three left-padded rows
    torch.testing.assert_close(comp_logits, eager_logits, rtol=1e-4, atol=1e-4)
    sampled = [_run(model, tiny_tokenizer, c, do_sample=True, temperature=0.9, seed=5)[0] for c in (False, True)]
    assert torch.equal(*sampled)  # the same random draws on the same probabilities

    with torch.no_grad():  # a training step between two generations: the frozen weights must not be reused
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    eager2, _ = _run(model, tiny_tokenizer, False)
    comp2, logits2 = _run(model, tiny_tokenizer, True)
    assert not torch.equal(eager2, eager) and torch.equal(comp2, eager2)


def test_graph_argmax_and_eos_without_processors(tiny_tokenizer):
    """Greedy with no processors takes the graph's own argmax; a row that emits EOS gets PAD afterwards and
    the loop stops when every row has ended, as the eager loop does."""
    model = build_model(ModelConfig(preset="tiny", context=256), tiny_tokenizer, seed=3).eval()
    ids = [[tiny_tokenizer.bos_token_id] + tiny_tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    enc = tiny_tokenizer.pad({"input_ids": ids}, padding=True, padding_side="left", return_tensors="pt")
    P = enc["input_ids"].shape[1]
    kw = dict(pad_token_id=tiny_tokenizer.pad_token_id)
    free = decode(model, enc["input_ids"], enc["attention_mask"], 16, eos_token_id=[], **kw)
    eos = int(free[0, P + 3])  # row 0 ends where this token first comes; the others run on or end where it does
    end = P + int((free[0, P:] == eos).nonzero()[0]) + 1
    runs = [
        decode(model, enc["input_ids"], enc["attention_mask"], 16, eos_token_id=eos, compiled=c, **kw)
        for c in (False, True)
    ]
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[1][0, :end], free[0, :end]) and (runs[1][0, end:] == kw["pad_token_id"]).all()


def test_generate_settings_and_lora(tiny_tokenizer):
    from peft import LoraConfig, get_peft_model

    base = build_model(ModelConfig(preset="tiny", context=256), tiny_tokenizer, seed=1).eval()
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, lora)
    ids = prompt_ids(tiny_tokenizer, TEXTS[:1])
    with pytest.raises(LmforgeError, match="give a dtype"):
        generate_ids(model, tiny_tokenizer, ids, GenerationSettings(max_new_tokens=8, temperature=0, compile=True), 8)
    eager = generate_ids(model, tiny_tokenizer, ids, GenerationSettings(max_new_tokens=8, temperature=0), 8)
    merged = GenerationSettings(max_new_tokens=8, temperature=0, dtype="fp32", compile=True)
    assert torch.equal(generate_ids(model, tiny_tokenizer, ids, merged, 8), eager)


def test_cli_generate_and_serve_engine_compile(tiny_model_dir, capsys):
    """``lmforge generate --compile`` prints what the eager loop prints; ``lmforge serve --compile``'s engine
    decodes compiled."""
    from lmforge.cli import main
    from lmforge.serve import load_engine

    args = ["generate", str(tiny_model_dir), "--prompt", "The sea", "--temperature", "0", "--max-new-tokens", "12"]
    assert main([*args, "--device", "cpu"]) == 0
    eager = capsys.readouterr().out
    assert main([*args, "--device", "cpu", "--compile"]) == 0
    assert capsys.readouterr().out == eager and eager.startswith("The sea")
    import queue

    from lmforge.serve.engine import Job

    texts = []
    for compile in (False, True):
        engine = load_engine(str(tiny_model_dir), device="cpu", compile=compile)
        try:
            events: queue.Queue = queue.Queue()
            rows = prompt_ids(engine.tokenizer, ["The sea is"])
            settings = GenerationSettings(max_new_tokens=10, temperature=0)
            engine.submit(Job(prompts=rows, settings=settings, emit=events.put))
            seen = [events.get(timeout=120)]
            while seen[-1][0] == "token":
                seen.append(events.get(timeout=120))
            assert seen[-1][0] == "done", seen[-1]
            texts.append(seen[:-1])
        finally:
            engine.close()
    assert texts[0] == texts[1] and len(texts[0]) >= 2  # the same streamed tokens, compiled or not


def test_several_batch_shapes_in_one_process(tiny_tokenizer):
    """One compiled step per batch size, several in one process (through torch.compile, dynamo's default of 8
    recompilations of one code object stopped a server at its ninth batch size)."""
    model = build_model(ModelConfig(preset="tiny", context=256), tiny_tokenizer, seed=2).eval()
    settings = GenerationSettings(max_new_tokens=2, temperature=0, compile=True)
    for rows in range(1, 5):
        ids = prompt_ids(tiny_tokenizer, ["The sea"] * rows)
        assert generate_ids(model, tiny_tokenizer, ids, settings, 2).shape == (rows, 2)


def test_compiled_steps_die_with_their_model(tiny_tokenizer):
    """A compiled step keeps the weights it froze, not the model: a server that loads another model (or a
    notebook that drops one) gets the memory back."""
    import gc
    import weakref

    import lmforge.generate.compiled as compiled

    model = build_model(ModelConfig(preset="tiny", context=256), tiny_tokenizer, seed=4).eval()
    settings = GenerationSettings(max_new_tokens=2, temperature=0, compile=True)
    generate_ids(model, tiny_tokenizer, prompt_ids(tiny_tokenizer, ["The sea"]), settings, 2)
    alive = weakref.ref(model)
    assert model in compiled._steps
    del model
    gc.collect()
    assert alive() is None
