import torch

from lmforge.core.config import ModelConfig
from lmforge.model import PRESETS, build_model, flops_per_token, resolve_model_path


def test_presets_are_llama_with_rope_and_expected_sizes(tiny_tokenizer):
    sizes = {}
    for name in ("tiny", "1m", "10m"):
        m = build_model(ModelConfig(preset=name), tiny_tokenizer)
        assert type(m).__name__ == "LlamaForCausalLM" and m.config.hidden_act == "silu"
        assert m.config.max_position_embeddings == PRESETS[name].context
        sizes[name] = sum(p.numel() for p in m.parameters())
    assert sizes["tiny"] < 1e6 < 8e6 < sizes["10m"] < 12e6


def test_flops_per_token_by_hand(tiny_tokenizer):
    m = build_model(ModelConfig(preset="tiny"), tiny_tokenizer)
    d, f, L, V, T = 64, 176, 2, len(tiny_tokenizer), 128
    per_layer = 4 * d * d + 3 * d * f  # q, k, v, o + gate, up, down
    assert flops_per_token(m, T) == 6 * (L * per_layer + V * d) + 12 * L * d * T


def test_same_seed_same_weights(tiny_tokenizer):
    a = build_model(ModelConfig(preset="tiny"), tiny_tokenizer, seed=3)
    b = build_model(ModelConfig(preset="tiny"), tiny_tokenizer, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_run_folder_resolves_to_best_then_model(tmp_path):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "adapter_config.json").write_text("{}")
    assert resolve_model_path(run) == str((run / "model").resolve())
    (run / "best").mkdir()
    (run / "best" / "config.json").write_text("{}")
    assert resolve_model_path(run) == str((run / "best").resolve())
    assert resolve_model_path("owner/name") == "owner/name"


def test_auto_attention_is_eager_only_for_short_bf16_training_on_cpu():
    from lmforge.model import pick_attention

    assert pick_attention("auto", "bf16", "cpu", 256) == "eager"
    assert pick_attention("auto", "bf16", "cpu", 4096) == "sdpa"  # (B, H, T, T) scores would be large
    assert pick_attention("auto", "no", "cpu", 256) == "sdpa"  # level in fp32: keep the default
    assert pick_attention("auto", "bf16", "cuda", 256) == "sdpa"
    assert pick_attention("sdpa", "bf16", "cpu", 256) == "sdpa"  # an explicit choice is kept
    assert pick_attention(None, "bf16", "cpu", 256) is None


def test_eager_and_sdpa_attention_train_alike(tiny_tokenizer):
    """Switching the kernel changes speed, not the model: same loss and gradients (float tolerance)."""
    from lmforge.core.config import ModelConfig
    from lmforge.model import build_model, set_attention

    x = torch.randint(0, len(tiny_tokenizer), (2, 32))
    out = {}
    for impl in ("sdpa", "eager"):
        model = build_model(ModelConfig(preset="tiny", context=32), tiny_tokenizer, seed=0)
        set_attention(model, impl)
        assert model.config._attn_implementation == impl
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        out[impl] = (loss.item(), model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    assert abs(out["sdpa"][0] - out["eager"][0]) < 1e-5
    assert torch.allclose(out["sdpa"][1], out["eager"][1], atol=1e-5)
