"""Decoding in bf16/fp16 (``GenerationSettings.dtype``, ``--dtype``): the cast copy (once per model, remade after
training, LoRA merged, rotary frequencies kept in float32), oneDNN-packed bf16 projections equal to ``F.linear``,
greedy agreement and logits against fp32 on a trained model, JSON constrained decoding still always valid."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmforge.core.config import LoraConfig, ModelConfig
from lmforge.core.errors import LmforgeError
from lmforge.generate import GenerationSettings, generate
from lmforge.generate.precision import _packable, decoding_model, packed_linear
from lmforge.model import apply_lora, build_model
from lmforge.scoring.metrics import json_valid, schema_valid
from tests.conftest import VERSE

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = [
    line[:n] for line in VERSE.splitlines() for n in (3, 8, 14, 20) if len(line) > n and not line.startswith("Ans")
][:20]


@pytest.fixture(scope="module")
def trained(tiny_tokenizer):
    """The tiny preset trained on the verse until its greedy continuations are confident (as a real run's are)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(preset="tiny", context=128), tiny_tokenizer, seed=0)
    ids = tiny_tokenizer(VERSE * 8, add_special_tokens=False)["input_ids"]
    rows = torch.tensor([ids[i : i + 64] for i in range(0, len(ids) - 64, 32)])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss = model(input_ids=rows, labels=rows).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < 1.0  # it learned the text
    return model.eval()


def _greedy_ids(model, tok, dtype):
    from lmforge.generate import generate_ids, prompt_ids

    s = GenerationSettings(max_new_tokens=32, temperature=0, dtype=dtype, batch_size=20)
    return generate_ids(model, tok, prompt_ids(tok, PROMPTS), s, 32)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_greedy_agrees_with_fp32(trained, tiny_tokenizer, dtype):
    """The issue's q8_0 bar for a lossy format: >= 95% of greedy tokens equal to fp32's on 20 prompts."""
    ref, half = _greedy_ids(trained, tiny_tokenizer, "fp32"), _greedy_ids(trained, tiny_tokenizer, dtype)
    assert ref.shape == half.shape
    assert (ref == half).float().mean().item() >= 0.95
    assert trained.model.embed_tokens.weight.dtype == torch.float32  # the model itself is untouched


@pytest.mark.parametrize("dtype,top_tol,tol", [("bf16", 0.02, 0.25), ("fp16", 0.005, 0.025)])
def test_half_log_probabilities_within_rounding(trained, tiny_tokenizer, dtype, top_tol, tol):
    """Teacher-forced on fp32's greedy text, log-probabilities within a bound of fp32's: ``top_tol`` nats for
    the token greedy picks, ``tol`` for every token above e^-20.

    bf16 keeps 8 significant bits (relative rounding 2^-9 of each weight and activation), fp16 11 (2^-12): on
    logits up to ~10, one rounding moves a logit by ~0.02 (bf16) or ~0.0025 (fp16), and a log-probability far
    in the tail moves with its logit. Measured here: bf16 0.006 (picked) and 0.09 (all), fp16 0.002 and 0.008;
    the bounds leave about 3x, and a wrong cast fails them (fp16's bounds are 8x under bf16's error, an
    unmerged or doubly merged adapter moves logits by whole nats)."""
    seq = torch.cat(
        [torch.tensor([[tiny_tokenizer.bos_token_id]]), _greedy_ids(trained, tiny_tokenizer, "fp32")[:1]], 1
    )
    with torch.no_grad():
        ref = F.log_softmax(trained(seq).logits.float(), -1)
        half = F.log_softmax(decoding_model(trained, dtype)(seq).logits.float(), -1)
    err = (ref - half).abs()
    top = ref.argmax(-1, keepdim=True)
    assert err.gather(-1, top).max().item() < top_tol
    assert err[ref > -20].max().item() < tol
    assert err.max().item() > 0  # it did decode in half precision


def test_the_lean_loop_keeps_generate_tokens_in_bf16(trained, tiny_tokenizer):
    """Decoding the bf16 copy (oneDNN-packed projections) gives Hugging Face ``generate``'s tokens on that copy."""
    from lmforge.generate import prompt_ids
    from lmforge.generate.decoding import decode

    copy = decoding_model(trained, "bf16")
    ids = prompt_ids(tiny_tokenizer, PROMPTS[:6])
    enc = tiny_tokenizer.pad({"input_ids": ids}, padding=True, padding_side="left", return_tensors="pt")
    kw = dict(max_new_tokens=24, pad_token_id=tiny_tokenizer.pad_token_id, eos_token_id=None)
    ref = copy.generate(**enc, do_sample=False, **kw)
    assert torch.equal(decode(copy, enc["input_ids"], enc["attention_mask"], **kw), ref)


def test_copy_once_per_model_and_remade_after_training(trained):
    first = decoding_model(trained, "bf16")
    assert decoding_model(trained, "bf16") is first  # not per call
    assert decoding_model(trained, "auto") is trained and decoding_model(trained, "fp32") is trained
    assert first.model.embed_tokens.weight.dtype == torch.bfloat16
    assert first.model.rotary_emb.inv_freq.dtype == torch.float32
    assert torch.equal(first.model.rotary_emb.inv_freq, trained.model.rotary_emb.inv_freq)
    assert decoding_model(first, "bf16") is first
    w = trained.model.layers[0].mlp.down_proj.weight
    with torch.no_grad():
        w.add_(1.0)  # a training step between two generations
        again = decoding_model(trained, "bf16")
        w.sub_(1.0)
    assert again is not first
    assert torch.equal(again.model.layers[0].mlp.down_proj.weight, (w + 1.0).to(torch.bfloat16))


def test_lora_is_merged_before_the_cast(tiny_tokenizer):
    base = build_model(ModelConfig(preset="tiny", context=128), tiny_tokenizer, seed=0)
    peft = apply_lora(base, LoraConfig(method="lora", r=4, alpha=8))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)  # adapters that change the output (B starts at zero)
    peft.eval()
    ids = torch.tensor([tiny_tokenizer("The sea is calm tonight,")["input_ids"]])
    with torch.no_grad():
        ref = peft(input_ids=ids).logits
        merged = decoding_model(peft, "fp32")
        half = decoding_model(peft, "bf16")
        assert not any("lora" in n for n, _ in merged.named_parameters())
        assert torch.allclose(merged(input_ids=ids).logits, ref, atol=1e-4)  # merge, no cast: the same model
        assert (half(input_ids=ids).logits.float() - ref).abs().max().item() < 0.1 * ref.abs().max().item()
    assert any("lora" in n for n, _ in peft.named_parameters())  # the wrapped model is left as it was


@pytest.mark.skipif(not _packable(torch.zeros(1, dtype=torch.bfloat16)), reason="no oneDNN bf16 kernels here")
@pytest.mark.parametrize("bias", [False, True])
def test_packed_bf16_projection_equals_f_linear(bias):
    torch.manual_seed(0)
    mods = [torch.nn.Linear(96, n, bias=bias).to(torch.bfloat16) for n in (96, 32, 32)]
    f = packed_linear(mods)
    w = torch.cat([m.weight for m in mods])
    b = torch.cat([m.bias for m in mods]) if bias else None
    for shape in ((1, 1, 96), (8, 1, 96), (2, 7, 96)):  # a step at batch 1, at batch 8, a prompt
        x = torch.randn(shape).to(torch.bfloat16)
        ref = F.linear(x.float(), w.float(), None if b is None else b.float())  # exact products, f32 sums
        assert f(x).dtype == torch.bfloat16 and f(x).shape == (*shape[:2], 160)
        assert torch.allclose(f(x).float(), ref, rtol=2**-7, atol=1e-2)  # one bf16 rounding of the result
    assert packed_linear([torch.nn.Linear(4, 4)]) is None  # float32: F.linear, as before


def test_constrained_json_stays_valid_in_half_precision(trained, tiny_tokenizer):
    schema = {"type": "object", "properties": {"canto": {"type": "integer"}}, "required": ["canto"]}
    for dtype in ("bf16", "fp16"):
        for spec in ("any", schema):
            s = GenerationSettings(max_new_tokens=24, temperature=0.8, seed=0, json_schema=spec, dtype=dtype)
            outs = generate(trained, tiny_tokenizer, PROMPTS, s)
            check = json_valid if spec == "any" else (lambda t: schema_valid(t, schema=schema))
            assert all(check(t) == 1.0 for t in outs), outs


def test_unknown_dtype_is_a_one_line_error(trained, tiny_tokenizer, capsys, tiny_model_dir):
    with pytest.raises(LmforgeError, match="unknown dtype 'int3'"):
        generate(trained, tiny_tokenizer, ["x"], GenerationSettings(dtype="int3"))
    from lmforge.cli import main

    assert main(["generate", str(tiny_model_dir), "--prompt", "The sea", "--temperature", "0", "--dtype", "bf16",
                 "--max-new-tokens", "8", "--device", "cpu"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith("The sea")
    with pytest.raises(SystemExit):
        main(["generate", str(tiny_model_dir), "--prompt", "x", "--dtype", "int3"])
    assert "invalid choice: 'int3'" in capsys.readouterr().err


def test_serve_engine_decodes_with_the_cast_copy(tiny_model_dir):
    """``lmforge serve --dtype bf16`` / ``lmforge chat --dtype bf16``: the engine owns the bf16 copy."""
    import queue

    from lmforge.generate import prompt_ids
    from lmforge.serve import load_engine
    from lmforge.serve.engine import Job

    engine = load_engine(str(tiny_model_dir), device="cpu", dtype="bf16")
    try:
        assert next(engine.model.parameters()).dtype == torch.bfloat16
        events: queue.Queue = queue.Queue()
        rows = prompt_ids(engine.tokenizer, ["The sea is"])
        engine.submit(Job(prompts=rows, settings=GenerationSettings(max_new_tokens=6, temperature=0), emit=events.put))
        seen = [events.get(timeout=60)]
        while seen[-1][0] == "token":
            seen.append(events.get(timeout=60))
        assert seen[-1][0] == "done" and len(seen) >= 2  # tokens, then the end (no error)
    finally:
        engine.close()
    with pytest.raises(LmforgeError, match="unknown dtype"):
        load_engine(str(tiny_model_dir), device="cpu", dtype="half")
