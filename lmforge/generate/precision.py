"""Decoding in half precision: a bf16 or fp16 copy of a float model, made once per model, and oneDNN-packed
bf16 projections for the CPU.

At batch 1 a decoding step reads every weight once, so on a CPU its time is mostly memory traffic: half
precision halves the bytes. PyTorch's own CPU matrix-vector product in bf16 does not gain from that (it runs
at about half the bandwidth of the fp32 one); oneDNN's matmul on weights packed ahead of time for it does
(AMX / AVX-512 BF16 kernels), with the same results as ``F.linear`` on the same weights. ``packed_linear``
packs once per weight and reuses the packing while the weight is unchanged.

The copy (``decoding_model``): LoRA adapters merged into the base weights in their own precision first, then
everything cast; the rotary frequencies stay as the model computed them (``inv_freq`` in float32, as
Hugging Face keeps them when it loads a model in half precision). The copy is kept while the model lives and
remade when any of its parameters changed (a training step between two generations).
"""

from __future__ import annotations

import copy
import weakref
from typing import Optional

import torch

from lmforge.core.errors import LmforgeError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CHOICES = ("auto", *DTYPES)
"""``auto``: the model's own dtype (no copy)."""
COMPILE_HELP = "new tokens through one compiled C++ graph: 10-30 s to compile per batch shape, then much faster"
DTYPE_HELP = "decode with weights in this precision (a cast copy; auto: the model's own; bf16: faster from ~10M params)"

_copies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {dtype: (stamp, copy)}
_packed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # first Linear -> (stamp, packed, bias)


def check_dtype(name: str) -> None:
    if name not in CHOICES:
        raise LmforgeError(f"unknown dtype {name!r}; use {', '.join(CHOICES)}")


def _stamp(params) -> tuple:
    """Where each parameter lives and how often it was changed in place: equal stamps, equal weights."""
    return tuple((p.data_ptr(), p._version) for p in params)


def _float_params(model) -> list:
    return [p for p in model.parameters() if p.is_floating_point()]


def decoding_model(model, dtype: str = "auto"):
    """``model`` itself for ``auto`` or when it already is ``dtype``; else its cast copy (merged LoRA), cached."""
    check_dtype(dtype)
    if dtype == "auto":
        return model
    want = DTYPES[dtype]
    merged = hasattr(model, "merge_and_unload")
    if not merged and all(p.dtype == want for p in _float_params(model)):
        return model
    if getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None) is not None:
        raise LmforgeError(f"dtype {dtype} needs a float model; this one is quantized (use dtype auto)")
    stamp = _stamp(model.parameters())
    cached = _copies.get(model, {}).get(want)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    out = copy.deepcopy(model)
    if merged:
        out = out.merge_and_unload()  # W + (alpha/r) B A in the adapter's own precision, then cast
    freqs = {n: b.detach().clone() for n, b in out.named_buffers() if n.endswith("inv_freq")}
    out.to(want).eval()
    for name, b in freqs.items():  # rotary tables computed from the float32 frequencies, as before
        owner, _, leaf = name.rpartition(".")
        out.get_submodule(owner).register_buffer(leaf, b, persistent=False)
    _copies.setdefault(model, {})[want] = (stamp, out)
    return out


def _packable(w: torch.Tensor) -> bool:
    """bf16 on a CPU whose oneDNN has bf16 kernels (fp16 packed was no faster than ``F.linear`` here)."""
    if w.device.type != "cpu" or w.dtype != torch.bfloat16 or not torch.backends.mkldnn.is_available():
        return False
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def packed_linear(modules) -> Optional[object]:
    """One callable for plain bf16 ``nn.Linear``s of the same input (outputs concatenated) on a CPU
    with oneDNN bf16 kernels, on their weights packed once; None where it does not apply."""
    if not all(type(m) is torch.nn.Linear for m in modules) or not all(_packable(m.weight) for m in modules):
        return None
    if len({m.bias is None for m in modules}) > 1:
        return None
    stamp = _stamp([m.weight for m in modules] + [m.bias for m in modules if m.bias is not None])
    stamp = (tuple(id(m) for m in modules), stamp)
    hit = _packed.get(modules[0])
    if hit is None or hit[0] != stamp:
        with torch.no_grad():
            w = torch.cat([m.weight for m in modules]) if len(modules) > 1 else modules[0].weight
            b = None if modules[0].bias is None else torch.cat([m.bias for m in modules])
            hit = (stamp, torch.ops.mkldnn._reorder_linear_weight(w, 1), b)  # packed for one row at a time
        _packed[modules[0]] = hit
    _, w, b = hit
    return lambda x: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
