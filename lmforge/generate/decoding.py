"""A lean decoding loop for Llama-architecture models: Hugging Face ``generate``'s tokens, several times faster
on CPU for small models.

For a model of a few million parameters, ``generate`` spends most of each step in Python (cache objects,
mask construction, rotary tables, stopping bookkeeping), not in matmuls. This loop calls the model's own
modules (embedding, norms, projections: LoRA-wrapped or quantized ones too) and its own rotary embedding,
and keeps the rest static:

- one preallocated key/value buffer per layer for prompt + budget (no cache growth or copies);
- the rotary cos/sin for every position computed once, by the model's ``rotary_emb``;
- the attention mask built once (left padding + causality) and sliced per step;
- the output projection on the last position only.

Selection is ``generate``'s: processors (``observers`` first, then the given ones), then temperature, top-k,
top-p warpers, then ``multinomial`` or ``argmax``; finished rows get PAD (where EOS is set); the same random draws, so a
seeded sample equals ``generate``'s. ``supports`` says when it applies; otherwise callers use ``generate``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmforge.core.errors import LmforgeError
from lmforge.generate.compiled import buffer_length, compilable, compiled_step
from lmforge.generate.precision import packed_linear

# generation_config fields that would add processors generate applies and this loop does not
_UNSUPPORTED = {
    "repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "sequence_bias": (None,),
    "guidance_scale": (None, 1.0),
    "epsilon_cutoff": (None, 0.0),
    "eta_cutoff": (None, 0.0),
    "typical_p": (None, 1.0),
    "min_p": (None,),
    "renormalize_logits": (None, False),
}


def _llama(model):
    """The ``LlamaForCausalLM`` under a PEFT wrapper, or None."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner if type(inner).__name__ == "LlamaForCausalLM" else None


def supports(model) -> bool:
    """Llama models whose generation config adds nothing beyond sampling settings."""
    inner = _llama(model)
    if inner is None or getattr(inner.config, "sliding_window", None):
        return False
    rope = getattr(inner.config, "rope_parameters", None) or getattr(inner.config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type")) in ("dynamic", "longrope"):  # tables that change with the length
        return False
    gc = getattr(inner, "generation_config", None)
    return all(getattr(gc, k, None) in ok for k, ok in _UNSUPPORTED.items())


def _warpers(temperature: float, top_k: int, top_p: float) -> list:
    """generate's sampling warpers, in its order, for these settings."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    out = []
    if temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_k:
        out.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    return out


@torch.no_grad()  # not inference_mode: callers may train on the ids (RL rollouts)
def decode(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    *,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    pad_token_id: int,
    eos_token_id=None,
    logits_processor=(),
    stopping_criteria=(),
    compiled: bool = False,
) -> torch.Tensor:
    """Prompt + new tokens ``[B, P + n]`` (n <= max_new_tokens), as ``model.generate`` returns them.

    input_ids, attention_mask: ``[B, P]``, left-padded. ``compiled``: the tokens after the prompt through
    one inductor-compiled graph (``lmforge.generate.compiled``; the model's projections plain ``nn.Linear`` layers)."""
    lm = _llama(model)
    cfg, body = lm.config, lm.model
    B, P = input_ids.shape
    if compiled and not compilable(lm):
        raise LmforgeError("compiled decoding needs plain Linear layers; for a LoRA model give a dtype (fp32 or bf16)")
    T = buffer_length(P + max_new_tokens) if compiled else P + max_new_tokens
    dev = input_ids.device
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads or cfg.num_attention_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    dtype = body.embed_tokens.weight.dtype
    layers = [_Layer(layer, n_heads, n_kv, hd) for layer in body.layers]
    keys = [torch.zeros(B, n_kv, T, hd, dtype=dtype, device=dev) for _ in layers]
    values = [torch.zeros(B, n_kv, T, hd, dtype=dtype, device=dev) for _ in layers]
    # positions as generate numbers them: each row's first real token is 0
    mask = torch.cat([attention_mask.bool(), attention_mask.new_ones(B, T - P).bool()], dim=1)  # [B, T]
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)  # [B, T]
    cos, sin = body.rotary_emb(keys[0], torch.arange(T, device=dev)[None])  # [1, T, hd]
    # rotate_half(x) * sin == roll(x, hd/2) * sin with the first half of sin negated (negation is exact)
    sin = torch.cat((-sin[..., : hd // 2], sin[..., hd // 2 :]), dim=-1)
    # [B, 1, T, T]: causal, real keys only; a padded query sees itself (finite garbage, never read)
    causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
    allowed = (causal[None] & mask[:, None, :]) | torch.eye(T, dtype=torch.bool, device=dev)[None]
    allowed = None if bool(mask.all()) else allowed[:, None]  # no padding: sdpa's own causal path, as generate
    if eos_token_id is None:  # as generate: the model's own
        eos_token_id = getattr(lm.generation_config, "eos_token_id", None)
    eos = [] if eos_token_id is None else ([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id))
    eos_ids = torch.tensor(eos, device=dev)
    pad = torch.tensor(pad_token_id, device=dev)
    head, final_norm = _linear(lm.lm_head), _rms_norm(body.norm)
    procs = [*logits_processor, *(_warpers(temperature, top_k, top_p) if do_sample else [])]
    step = compiled_step(lm, B, cos[0], sin[0]) if compiled else None
    cols = torch.arange(T, device=dev)
    # the sequence so far is a view of one buffer (no copy of the whole sequence per token)
    seq = torch.cat([input_ids, input_ids.new_full((B, max_new_tokens), pad_token_id)], dim=1)
    unfinished = torch.ones(B, dtype=torch.bool, device=dev)
    step_ids, start, n = input_ids, 0, 0
    for n in range(1, max_new_tokens + 1):
        end = start + step_ids.shape[1]
        best = None
        if step is not None and end - start == 1:  # a new token: the compiled graph, buffers of length T
            logits, best = step(step_ids, cols[start:end], pos[:, start], mask, keys, values)
        else:
            logits = _eager(body, layers, head, final_norm, step_ids, cos, sin, pos, keys, values, start, end, allowed)
        so_far = seq[:, : P + n - 1]
        for proc in procs:
            logits = proc(so_far, logits)
        if do_sample:
            nxt = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1).squeeze(1)
        else:  # the graph's own argmax of the logits, unless processors changed them
            nxt = best if best is not None and not procs else logits.argmax(-1)
        if eos:  # generate pads finished rows only when it stops at EOS
            nxt = torch.where(unfinished, nxt, pad)
            unfinished &= (nxt != eos_ids[0]) if len(eos) == 1 else ~torch.isin(nxt, eos_ids)
        seq[:, P + n - 1] = nxt
        for crit in stopping_criteria:
            stop = crit(seq[:, : P + n], logits)
            unfinished &= ~(stop if isinstance(stop, torch.Tensor) else torch.full_like(unfinished, bool(stop)))
        if not unfinished.any():
            break
        step_ids, start = nxt[:, None], end
    return seq[:, : P + n]


def _eager(body, layers, head, final_norm, step_ids, cos, sin, pos, keys, values, start, end, allowed):
    """float32 logits [B, V] of the last of positions start:end, through the model's modules."""
    if allowed is None:  # no padding: every row at positions start:end
        c, s = cos[:, None, start:end], sin[:, None, start:end]  # [1, 1, t, hd]
    else:
        p = pos[:, start:end]  # [B, t]
        c, s = cos[0][p].unsqueeze(1), sin[0][p].unsqueeze(1)  # [B, 1, t, hd]
    h = body.embed_tokens(step_ids)  # [B, t, C]
    for i, layer in enumerate(layers):
        h = layer(h, c, s, keys[i], values[i], start, end, allowed)
    return head(final_norm(h[:, -1:]))[:, -1].float()


def _rope(x, cos, sin):
    """Hugging Face's ``x * cos + rotate_half(x) * sin``, with ``sin``'s first half negated beforehand."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin


_FUSE_MAX = 1 << 22  # stack projections up to 4M weights: a copy per call, small beside the matmuls saved


def _linear(*modules):
    """One callable for one or more projections of the same input (outputs concatenated): plain ``nn.Linear``s
    as ``F.linear``, small ones stacked into a single matmul (bit-identical outputs); other modules (LoRA,
    quantized) called as they are; half-precision ones on a CPU through oneDNN on packed weights (``precision``)."""
    packed = packed_linear(modules)
    if packed is not None:
        return packed
    if all(type(m) is torch.nn.Linear for m in modules):
        if len(modules) == 1:
            m = modules[0]
            return lambda x: F.linear(x, m.weight, m.bias)
        if sum(m.weight.numel() for m in modules) <= _FUSE_MAX:
            w = torch.cat([m.weight for m in modules])
            b = None if modules[0].bias is None else torch.cat([m.bias for m in modules])
            return lambda x: F.linear(x, w, b)
    if len(modules) == 1:
        return modules[0]
    return lambda x: torch.cat([m(x) for m in modules], dim=-1)


def _rms_norm(norm):
    """Hugging Face's LlamaRMSNorm without the module call: torch's fused ``rms_norm`` in float32 (the same
    bits), op for op in other dtypes."""
    w, eps = norm.weight, norm.variance_epsilon

    def f(x):
        if x.dtype == torch.float32 and w.dtype == torch.float32:
            return F.rms_norm(x, w.shape, w, eps)
        h = x.float()
        return w * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)

    return f if type(norm).__name__ == "LlamaRMSNorm" else norm


class _Layer:
    """One decoder layer's callables, resolved once per call of ``decode``."""

    def __init__(self, layer, n_heads: int, n_kv: int, hd: int):
        a, m = layer.self_attn, layer.mlp
        self.norm1, self.norm2 = _rms_norm(layer.input_layernorm), _rms_norm(layer.post_attention_layernorm)
        self.qkv, self.o = _linear(a.q_proj, a.k_proj, a.v_proj), _linear(a.o_proj)
        self.gate_up, self.down, self.act = _linear(m.gate_proj, m.up_proj), _linear(m.down_proj), m.act_fn
        self.n_heads, self.n_kv, self.hd, self.scale = n_heads, n_kv, hd, a.scaling

    def __call__(self, h, cos, sin, kbuf, vbuf, start, end, allowed):
        """h: [B, t, C] for positions start:end; keys and values go into the buffers [B, n_kv, T, hd]."""
        B, t, _ = h.shape
        qkv = self.qkv(self.norm1(h)).view(B, t, -1, self.hd).transpose(1, 2)  # [B, H + 2 n_kv, t, hd]
        qk = _rope(qkv[:, : self.n_heads + self.n_kv], cos, sin)  # queries and keys rotated together
        kbuf[:, :, start:end] = qk[:, self.n_heads :]
        vbuf[:, :, start:end] = qkv[:, self.n_heads + self.n_kv :]
        out = F.scaled_dot_product_attention(
            qk[:, : self.n_heads],
            kbuf[:, :, :end],
            vbuf[:, :, :end],
            attn_mask=None if allowed is None else allowed[:, :, start:end, :end],
            is_causal=allowed is None and t > 1,  # the prompt (start = 0); one new token sees every key
            scale=self.scale,
            enable_gqa=self.n_kv != self.n_heads,
        )
        h = h + self.o(out.transpose(1, 2).reshape(B, t, -1))
        gate, up = self.gate_up(self.norm2(h)).chunk(2, dim=-1)
        return h + self.down(self.act(gate) * up)
