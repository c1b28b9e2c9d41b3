"""One decoding step compiled by inductor, for long-lived generation (``--compile``).

After the prompt, each new token runs the same small graph: embedding, per layer a norm, the fused q/k/v
projection, rotary embedding, a write into the key/value buffers, attention, the output projection and the
gated MLP, then the last norm, the head and the greedy choice. For a model of a few million parameters most of
an eager step is the Python and dispatch cost of those ~30 small operations per layer; inductor fuses the
element-wise ones into generated C++ and, with its weight freezing, calls oneDNN on weights packed ahead of
time (which is where bf16 pays on a CPU). The prompt itself still runs eagerly (``decoding``), once.

The graph is exported (``torch.export``) and compiled by inductor directly (``standalone_compile``), not through
``torch.compile``: a call then goes straight to the compiled code, without dynamo's frame evaluation, guards
and argument handling, which cost about a tenth of a 1M-parameter model's token.

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
        are tokens (not left padding). Returns float32 logits [B, V] and their argmax [B] (greedy selection)."""
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
        logits = self.lm.lm_head(_norm(body.norm, h))[:, -1].float()
        return logits, logits.argmax(-1)


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
    step = _Compiled(_Step(lm, cos, sin).eval())
    _steps[lm][key] = (stamp, step)
    return step


class _Compiled:
    """The step's graph, compiled at its first call for those inputs' shapes: exported (``torch.export``: the
    model's weights become constants of the graph) and compiled by inductor alone (``standalone_compile``),
    with weight freezing, the C++ wrapper and, on a CPU, each projection's kernel chosen by timing inductor's
    C++ GEMM template against oneDNN (seconds more to compile; at batch 1 the template is up to 2.6x faster in
    bf16). Later calls go straight to the compiled code: no dynamo frame, guards or argument flattening between
    the decoding loop and the graph. A compilation that fails (no C++ compiler, say) is one clear error."""

    def __init__(self, module: torch.nn.Module):
        self.module, self.fn = module, None

    def __call__(self, ids, col, pos, real, keys: list, values: list):
        if self.fn is None:
            self.fn = self._compile((ids, col, pos, real, keys, values))
            self.module = None  # the compiled code holds the weights it needs, not the model: ``_steps`` lets go
        return self.fn(ids, col, pos, real, *keys, *values)

    def _compile(self, args: tuple):
        import logging
        import warnings

        import torch._inductor.config as inductor

        quiet = logging.getLogger("torch._inductor.standalone_compile")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # "cannot save": the artifact is never saved, only called
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch's internal deprecations, not the user's
                graph = torch.export.export(self.module, args).module()
                flat = [*args[:4], *args[4], *args[5]]
                opts = {"freezing": True, "cpp_wrapper": True}
                if args[0].device.type == "cpu":  # inductor's own C++ GEMM kernels where they time faster than
                    opts.update(max_autotune=True, max_autotune_gemm_backends="CPP,ATEN")  # oneDNN's (small M)
                    opts.update(autotune_num_choices_displayed=0)  # no timing tables on the user's terminal
                with inductor.patch(**opts):
                    return torch._inductor.standalone_compile(graph, flat, dynamic_shapes="from_example_inputs")
        except Exception as e:  # torch's own errors: BackendCompilerFailed, a missing compiler, ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise LmforgeError(f"compiled decoding failed ({first[:300]}); decode without --compile") from e
        finally:
            quiet.setLevel(level)
