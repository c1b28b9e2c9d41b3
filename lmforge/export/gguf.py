"""A Llama-architecture model as one GGUF file for llama.cpp (``lmforge export gguf RUN --out FILE.gguf``).

Written with ``gguf``, the library llama.cpp ships, following its ``convert_hf_to_gguf.py`` for Llama:
the same hyperparameter keys, tensor names (``gguf.get_tensor_name_map``), Q/K row permutation and
per-tensor types (norms in F32; a matrix whose rows do not split into Q8_0's 32-value blocks in F16).
A LoRA run is merged into its base first. The tokenizer mapping is ``gguf_vocab``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lmforge.core.errors import LmforgeError
from lmforge.export.gguf_vocab import GgufVocab, gguf_vocab
from lmforge.export.merge import merged_model

TYPES = ("f16", "q8_0", "f32")


def export_gguf(
    model_path: str | Path,
    out: str | Path,
    qtype: str = "f16",
    base: Optional[str] = None,
    pre: Optional[str] = None,
    trust_remote_code: bool = False,
) -> Path:
    """Writes ``out`` (a temporary file renamed into place); returns its path."""
    import gguf

    if qtype not in TYPES:
        raise LmforgeError(f"--type {qtype!r}: use one of {', '.join(TYPES)}")
    out = Path(out)
    model, tokenizer = merged_model(model_path, base=base, dtype=torch.float32, trust_remote_code=trust_remote_code)
    cfg = model.config
    if cfg.model_type != "llama":
        raise LmforgeError(f"export gguf writes Llama-architecture models; {model_path} is {cfg.model_type!r}")
    vocab = gguf_vocab(tokenizer, cfg.vocab_size, pre)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    writer = gguf.GGUFWriter(tmp, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    try:
        writer.add_name(Path(str(model_path)).name or "model")
        _write_hparams(writer, cfg, qtype)
        _write_vocab(writer, vocab)
        _write_tensors(writer, model, cfg, qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(tmp, out)
    return out


def _rope(cfg) -> tuple[float, dict]:
    params = dict(getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {})
    theta = params.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ("default", "linear"):
        raise LmforgeError(f"export gguf: RoPE scaling {kind!r} is not written yet (default and linear are)")
    return float(theta), params if kind == "linear" else {}


def _write_hparams(writer, cfg, qtype: str) -> None:
    import gguf

    if getattr(cfg, "mlp_bias", False):
        raise LmforgeError("export gguf: llama.cpp's Llama has no MLP biases (model.config.mlp_bias is set)")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    theta, linear = _rope(cfg)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads or cfg.num_attention_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(theta)
    if linear:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(linear["factor"]))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}
    writer.add_file_type(ftype.get(qtype, gguf.LlamaFileType.MOSTLY_Q8_0))


def _write_vocab(writer, v: GgufVocab) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(v.pre)
    writer.add_token_list(v.tokens)
    writer.add_token_types(v.types)
    writer.add_token_merges(v.merges)
    for kind, i in v.special_ids.items():
        getattr(writer, f"add_{kind}_token_id")(i)
    writer.add_add_bos_token("bos" in v.special_ids)  # lmforge's prompts start with BOS, as training saw them
    writer.add_add_eos_token(False)
    if v.chat_template:
        writer.add_chat_template(v.chat_template)


def permute_qk(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Hugging Face's rotate-half Q/K rows -> llama.cpp's interleaved pairs (convert_hf_to_gguf's ``permute``)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _write_tensors(writer, model, cfg, qtype: str) -> None:
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    n_kv = cfg.num_key_value_heads or cfg.num_attention_heads
    tied = getattr(cfg, "tie_word_embeddings", False)
    for hf_name, t in model.state_dict().items():
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue  # recomputed by llama.cpp / the embedding matrix serves as the output layer
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise LmforgeError(f"export gguf: no llama.cpp name for tensor {hf_name}")
        t = t.detach().float()
        if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            t = permute_qk(t, cfg.num_attention_heads)
        elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            t = permute_qk(t, n_kv)
        data, kind = _encode(t.numpy(), name, qtype)
        writer.add_tensor(name, data, raw_dtype=kind)


def _encode(data: np.ndarray, name: str, qtype: str):
    """(array, GGML type) of one tensor: vectors and norms F32; matrices F16 or Q8_0 (F16 where rows do not split
    into 32-value blocks), as convert_hf_to_gguf does."""
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import QuantError, quantize

    if data.ndim <= 1 or name.endswith("_norm.weight") or qtype == "f32":
        return data.astype(np.float32), Q.F32
    if qtype == "q8_0":
        try:
            return quantize(data, Q.Q8_0), Q.Q8_0
        except QuantError:
            pass
    return data.astype(np.float16), Q.F16
