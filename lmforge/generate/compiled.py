"""One decoding step compiled by ``torch.compile`` (inductor), for long-lived generation (``--compile``).

After the prompt, each new token runs the same small graph: embedding, per layer a norm, the fused q/k/v
projection, rotary embedding, a write into the key/value buffers, attention, the output projection and the
gated MLP, then the last norm and the head. For a model of a few million parameters most of an eager step is
the Python and dispatch cost of those ~30 small operations per layer; inductor fuses the element-wise ones
into generated C++ and, with its weight freezing, calls oneDNN on weights packed ahead of time (which is where
bf16 pays on a CPU). The prompt itself still runs eagerly (``decoding``), once.

Shapes are static, so the graph is compiled once per (batch rows, buffer length, dtype, device): the buffer
length is the prompt plus the budget rounded up to a multiple of ``BUCKET`` (positions past the current one
are masked), so nearby lengths share one compilation. The first call per shape takes seconds (a C++ compiler
is needed), later calls reuse it; the weights are frozen into the compiled code, so the step is remade when
any weight changed (a training step between two generations). Llama models whose projections are plain
``nn.Linear`` layers only: a LoRA model decodes compiled through its merged copy (``dtype`` fp32 or bf16).
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from lmforge.core.errors import LmforgeError

BUCKET = 64
RECOMPILES = 1024  # compiled shapes and models one process may hold
_steps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # LlamaForCausalLM -> {shape: (stamp, step)}


def buffer_length(positions: int) -> int:
    """The key/value buffer length a compiled step uses for ``positions`` (prompt + budget)."""
    return -(-positions // BUCKET) * BUCKET


def compilable(lm) -> bool:
    """Every projection a plain ``nn.Linear`` and every norm Llama's own (nothing the graph would not see)."""
    mods = [lm.lm_head]
    for layer in lm.model.layers:
        a, m = layer.self_attn, layer.mlp
        mods += [a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj]
        if type(layer.input_layernorm).__name__ != "LlamaRMSNorm":
            return False
    return all(type(x) is torch.nn.Linear for x in mods) and type(lm.model.norm).__name__ == "LlamaRMSNorm"


class _Step(torch.nn.Module):
    """The graph of one new token; holds the model's own modules (no copies of the weights)."""

    def __init__(self, lm, cos: torch.Tensor, sin: torch.Tensor):
        super().__init__()
        cfg = lm.config
        self.lm = lm
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads or self.n_heads
        self.hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.register_buffer("cos", cos, persistent=False)  # [T, hd], the rotary table (sin's first half negated)
        self.register_buffer("sin", sin, persistent=False)
        self.register_buffer("cols", torch.arange(cos.shape[0], device=cos.device), persistent=False)

    def forward(self, ids, col, pos, real, keys: list, values: list):
        """ids [B, 1] at buffer column ``col`` ([1]) and rotary positions ``pos`` [B]; ``real`` [B, T]: keys that
        are tokens (not left padding). Returns float32 logits [B, V]."""
        body, H, KV, hd = self.lm.model, self.n_heads, self.n_kv, self.hd
        B = ids.shape[0]
        allowed = (real & (self.cols <= col))[:, None, None, :]  # [B, 1, 1, T]
        c, s = self.cos[pos][:, None, None, :], self.sin[pos][:, None, None, :]  # [B, 1, 1, hd]
        h = body.embed_tokens(ids)
        for i, layer in enumerate(body.layers):
            a, m = layer.self_attn, layer.mlp
            x = _norm(layer.input_layernorm, h)
            w = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])  # folded into a constant
            qkv = F.linear(x, w).view(B, 1, -1, hd).transpose(1, 2)  # [B, H + 2 KV, 1, hd]
            qk = qkv[:, : H + KV]
            qk = qk * c + qk.roll(hd // 2, dims=-1) * s
            keys[i].index_copy_(2, col, qk[:, H:])
            values[i].index_copy_(2, col, qkv[:, H + KV :])
            out = F.scaled_dot_product_attention(
                qk[:, :H], keys[i], values[i], attn_mask=allowed, scale=a.scaling, enable_gqa=KV != H
            )
            h = h + a.o_proj(out.transpose(1, 2).reshape(B, 1, -1))
            w = torch.cat([m.gate_proj.weight, m.up_proj.weight])
            gate, up = F.linear(_norm(layer.post_attention_layernorm, h), w).chunk(2, dim=-1)
            h = h + m.down_proj(m.act_fn(gate) * up)
        return self.lm.lm_head(_norm(body.norm, h))[:, -1].float()


def _norm(norm, x):
    """Llama's RMSNorm, op for op (float32 statistics, the result cast back)."""
    h = x.float()
    return norm.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)).to(x.dtype)


def compiled_step(lm, rows: int, cos: torch.Tensor, sin: torch.Tensor):
    """The compiled step for ``rows`` and the buffer length of ``cos`` ([T, hd]); made once per shape and
    remade when the weights changed."""
    from lmforge.generate.precision import _stamp

    key = (rows, cos.shape[0], cos.device, lm.dtype)
    stamp = _stamp(lm.parameters())
    cached = _steps.setdefault(lm, {}).get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    step = _Compiled(torch.compile(_Step(lm, cos, sin).eval(), fullgraph=True, dynamic=False))
    _steps[lm][key] = (stamp, step)
    return step


class _Compiled:
    """The compiled module; its first call compiles, under inductor's weight freezing and C++ wrapper (less
    Python per call). A compilation that fails (no C++ compiler, say) is one clear error. Every step shares
    ``_Step.forward``'s code, where dynamo keeps one entry per shape and model: its limit of 8 recompilations
    is lifted for these (a server with a few batch sizes, a benchmark of several models)."""

    def __init__(self, fn):
        self.fn, self.ready = fn, False

    def __call__(self, *args):
        if self.ready:  # the inputs match the entry the first call compiled (same shapes, same module): only the
            with torch.compiler.set_stance(skip_guard_eval_unsafe=True):  # guards telling entries apart run
                return self.fn(*args)
        import torch._dynamo.config as dynamo
        import torch._inductor.config as inductor

        try:
            with inductor.patch(freezing=True, cpp_wrapper=True), dynamo.patch(recompile_limit=RECOMPILES):
                out = self.fn(*args)
        except Exception as e:  # torch's own errors: BackendCompilerFailed, a missing compiler, ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise LmforgeError(f"compiled decoding failed ({first[:300]}); decode without --compile") from e
        self.ready = True
        return out
