"""Inspect: surprisal by hand, logit lens against the model's own logits, attention against Hugging Face,
no hook left behind, and a report that renders in a real browser."""

from __future__ import annotations

import copy
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from lmforge.cli import main
from lmforge.inspect.views import (
    attention_maps,
    capture_attentions,
    capture_residuals,
    encode,
    entropy,
    forward_hooks,
    input_x_gradient,
    inspect_ids,
    least_likely,
    lens_logits,
    logit_lens,
    model_parts,
    surprisal,
    top_k,
)

TEXT = "Le vent se lève, il faut tenter de vivre."
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from lmforge.model import load_pretrained

    return load_pretrained(tiny_model_dir).eval()


@pytest.fixture(scope="module")
def lora_model(model):
    """LoRA on attention and on the output head, initialised non-zero so the adapters change the logits."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj", "lm_head"], init_lora_weights=False, task_type="CAUSAL_LM"
    )
    return get_peft_model(copy.deepcopy(model), cfg).eval()


def n_hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_surprisal_entropy_topk_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.5]])
    ids = torch.tensor([1, 0, 2])
    z0 = math.exp(2) + 1 + math.exp(-1)
    hand = [-math.log(math.exp(2) / z0), -math.log(1 / 3)]  # token 1 after row 0, token 2 after row 1
    assert surprisal(logits, ids).tolist() == pytest.approx(hand, abs=1e-6)
    p0 = [math.exp(2) / z0, 1 / z0, math.exp(-1) / z0]
    assert entropy(logits)[:2].tolist() == pytest.approx([-sum(p * math.log(p) for p in p0), math.log(3)], abs=1e-6)
    probs, idx = top_k(logits, 2)
    assert idx[2].tolist() == [1, 0] and probs[0, 0].item() == pytest.approx(p0[0])
    lp, li = least_likely(logits)
    assert li[0].item() == 2 and lp[0].item() == pytest.approx(p0[2])


def test_inspection_surprisal_is_minus_log_p_of_the_model(model, tiny_tokenizer):
    ids = encode(tiny_tokenizer, TEXT)
    insp = inspect_ids(model, tiny_tokenizer, ids)
    assert ids[0].item() == tiny_tokenizer.bos_token_id and insp.surprisal.shape == (len(ids) - 1,)
    logits = model(input_ids=ids[None]).logits[0].double()
    for t in (0, 5, len(ids) - 2):  # row t predicts token t+1
        row = logits[t].tolist()
        p = math.exp(row[ids[t + 1]]) / sum(math.exp(x) for x in row)
        assert insp.surprisal[t].item() == pytest.approx(-math.log(p), abs=1e-4)


@pytest.mark.parametrize("which", ["plain", "lora"])
def test_logit_lens_last_layer_is_the_models_logits(which, model, lora_model, tiny_tokenizer):
    m = model if which == "plain" else lora_model
    ids = encode(tiny_tokenizer, TEXT)
    with torch.no_grad(), capture_residuals(m) as states:
        logits = m(input_ids=ids[None]).logits[0]
        last = lens_logits(m, states[-1][0])
    assert len(states) == m.config.num_hidden_layers + 1
    torch.testing.assert_close(last, logits, rtol=0, atol=1e-5)
    probs, top, own = logit_lens(m, ids)
    assert probs.shape == top.shape == (m.config.num_hidden_layers + 1, len(ids))
    assert torch.equal(top[-1], logits.argmax(-1)) and torch.equal(own, logits)
    if which == "lora":  # the adapters are in the lens: the base model alone gives other logits
        with torch.no_grad(), lora_model.disable_adapter():
            assert not torch.allclose(lora_model(input_ids=ids[None]).logits[0], logits)


def test_attention_maps_match_hugging_face(model, tiny_tokenizer):
    ids = encode(tiny_tokenizer, TEXT)
    maps = attention_maps(model, ids)
    L, H, T = model.config.num_hidden_layers, model.config.num_attention_heads, len(ids)
    assert maps.shape == (L, H, T, T) and model.config._attn_implementation == "sdpa"  # switched back
    torch.testing.assert_close(maps.sum(-1), torch.ones(L, H, T))
    assert maps.triu(1).abs().max() == 0  # causal: no query sees a later key
    ref = copy.deepcopy(model)  # HF's own capture leaves hooks behind, so it runs on a copy
    ref.set_attn_implementation("eager")
    with torch.no_grad():
        want = torch.stack(ref(input_ids=ids[None], output_attentions=True).attentions)[:, 0]
    torch.testing.assert_close(maps, want)


def test_attribution_is_causal_and_targets_the_top_token(model, tiny_tokenizer):
    ids = encode(tiny_tokenizer, TEXT)
    pos = 6
    scores, target = input_x_gradient(model, ids, position=pos)
    assert scores.shape == (len(ids),) and scores[pos + 1 :].abs().max() == 0 and scores[: pos + 1].abs().sum() > 0
    with torch.no_grad():
        assert target == model(input_ids=ids[None]).logits[0, pos].argmax().item()
    assert all(p.grad is None for p in model.parameters())  # only the input embeddings were differentiated


def test_no_hook_remains_after_inspect_or_an_exception(model, lora_model, tiny_tokenizer):
    ids = encode(tiny_tokenizer, TEXT)
    for m in (model, lora_model):
        assert n_hooks(m) == 0
        inspect_ids(m, tiny_tokenizer, ids)
        assert n_hooks(m) == 0 and m.config._attn_implementation == "sdpa"
    for ctx in (
        lambda: capture_residuals(model),
        lambda: capture_attentions(model),
        lambda: forward_hooks((model_parts(model).norm, lambda *a: None)),
    ):
        with pytest.raises(RuntimeError, match="boom"):
            with ctx():
                assert n_hooks(model) > 0
                model(input_ids=ids[None])
                raise RuntimeError("boom")
        assert n_hooks(model) == 0 and model.config._attn_implementation == "sdpa"
    with pytest.raises(IndexError):  # an exception inside the forward itself
        with capture_residuals(model):
            model(input_ids=torch.tensor([[10_000]]))
    assert n_hooks(model) == 0 and not model.training


def png_size_and_ink(path: Path) -> tuple[int, int, float]:
    """Width, height and the share of pixels that are not near-white (Pillow comes with matplotlib)."""
    from PIL import Image

    with Image.open(path) as im:
        gray = im.convert("L")
        hist = gray.histogram()
        return im.width, im.height, sum(hist[:235]) / (im.width * im.height)


@pytest.fixture(scope="module")
def report_dir(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect")
    assert main(["inspect", str(tiny_model_dir), "--text", TEXT, "--out", str(out), "--target-position", "8"]) == 0
    return out


def test_cli_writes_a_self_contained_report(report_dir, tiny_model_dir, tiny_tokenizer, capsys):
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    for heading in ("Surprisal and entropy", "Logit lens", "Attention", "Input &times; gradient"):
        assert heading in page
    assert page.count("data:image/png;base64,") == 4 and "http" not in page.replace("http-equiv", "")
    # a hover box for every predicted token (all but the first) and for the guess after the text
    assert page.count("class='tip'") == len(encode(tiny_tokenizer, TEXT))
    for name in ("surprisal", "logit_lens", "attention", "attribution"):
        w, h, _ = png_size_and_ink(report_dir / f"{name}.png")
        assert w > 100 and h > 100
    bad = ["inspect", str(tiny_model_dir), "--text", TEXT, "--target-position", "99", "--out", str(report_dir)]
    assert main(bad) == 2
    assert "--target-position=99 is outside" in capsys.readouterr().err


HOSTILE = ["<script>alert(1)</script>", "a&b<c"]  # tokens the tokenizer decodes as such (added tokens)


def test_tokens_and_model_name_reach_the_page_escaped(model, tiny_tokenizer, tmp_path):
    """Markup-like tokens show as text: the template engine escapes them (this fails with autoescape off)."""
    from lmforge.inspect.report import write_report

    tok = copy.deepcopy(tiny_tokenizer)
    tok.add_tokens(HOSTILE)
    m = copy.deepcopy(model)
    m.resize_token_embeddings(len(tok))
    ids = encode(tok, f"Le vent {HOSTILE[0]} se lève, {HOSTILE[1]} il faut vivre.")
    insp = inspect_ids(m, tok, ids, target_position=6)
    assert HOSTILE[0] in insp.tokens and HOSTILE[1] in insp.tokens
    page = write_report(insp, tok, tmp_path, model_name="<b>tiny</b> & co").read_text(encoding="utf-8")
    assert "<script" not in page and "</script>" not in page and "a&b<c" not in page and "<b>tiny" not in page
    script = "&lt;script&gt;alert(1)&lt;/script&gt;"
    # heat map, its hover boxes (token that came, prediction after it), the logit lens header, the attribution
    assert page.count(script) >= 5 and page.count("a&amp;b&lt;c") >= 5
    assert page.count("&lt;b&gt;tiny&lt;/b&gt; &amp; co") == 2  # title and header
    assert page.count("class='tip'") == len(ids)  # the page's own markup is intact
    assert {p.name for p in tmp_path.iterdir()} == {
        "report.html",
        "inspection.json",
        "surprisal.png",
        "logit_lens.png",
        "attention.png",
        "attribution.png",
    }


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(report_dir, tmp_path):
    shot = tmp_path / "shot.png"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1200,900",
        (report_dir / "report.html").resolve().as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), res.stderr[-2000:]
    w, h, ink = png_size_and_ink(shot)
    assert (w, h) == (1200, 900)
    assert ink > 0.03, f"the screenshot is almost blank ({ink:.1%} ink)"


def test_cli_inspects_a_lora_adapter_folder(lora_model, tmp_path, capsys):
    adapter = tmp_path / "adapter"
    lora_model.save_pretrained(adapter)  # adapter weights only: the tokenizer comes from the base model
    assert not (adapter / "tokenizer_config.json").exists()
    assert main(["inspect", str(adapter), "--text", TEXT, "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.html").is_file()
    too_long = ["inspect", str(adapter), "--text", TEXT * 8, "--max-tokens", "1000", "--out", str(tmp_path)]
    assert main(too_long) == 2  # past the model's 128 positions
    assert "more than the model's 128 positions" in capsys.readouterr().err
