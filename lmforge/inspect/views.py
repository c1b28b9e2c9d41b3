"""What the model thinks, token by token: surprisal and entropy, the logit lens, attention maps and
input x gradient attributions.

The math is in pure functions of tensors. Everything that reads a model's insides goes through
context managers that install forward hooks and always remove them, even when the forward raises.
(We do not use ``output_hidden_states``/``output_attentions``: in transformers 5 they install capture
hooks on the model that stay there.) Works on any ``*ForCausalLM`` with ``layers``/``h`` blocks, and
on PEFT-wrapped models (adapters included: we call the wrapped modules themselves).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from lmforge.model.modes import evaluating

# ---- pure functions of logits (T, V) -------------------------------------------------------------------


def surprisal(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """-log p(token t+1 | tokens <= t) in nats: logits (T, V), ids (T,) -> (T-1,)."""
    logp = F.log_softmax(logits[:-1].float(), dim=-1)  # (T-1, V): row t predicts token t+1
    return -logp.gather(-1, ids[1:, None]).squeeze(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each row's next-token distribution: (T, V) -> (T,)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def top_k(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most likely next tokens of each row: probabilities (T, k) and ids (T, k), most likely first."""
    return F.softmax(logits.float(), dim=-1).topk(min(k, logits.size(-1)), dim=-1)


def least_likely(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The least likely next token of each row: probability (T,) and id (T,)."""
    probs, ids = F.softmax(logits.float(), dim=-1).min(dim=-1)
    return probs, ids


def bits(nats: torch.Tensor) -> torch.Tensor:
    """Nats to bits."""
    return nats / torch.log(torch.tensor(2.0))


# ---- the model's parts -----------------------------------------------------------------------------------


@dataclass
class Parts:
    """The pieces the views need, found on a plain or PEFT-wrapped causal LM."""

    base: torch.nn.Module  # the transformers model (LoRA layers inside when wrapped)
    embed: torch.nn.Module
    layers: list[torch.nn.Module]
    norm: torch.nn.Module  # final norm, applied before the output head
    head: torch.nn.Module


def _first_attr(obj, names: tuple[str, ...], what: str):
    for n in names:
        if getattr(obj, n, None) is not None:
            return getattr(obj, n)
    raise ValueError(f"{type(obj).__name__} has no {what} (looked for {', '.join(names)})")


def model_parts(model) -> Parts:
    """Embedding, decoder layers, final norm and head of a Llama-like (or GPT-2-like) model, PEFT or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT -> transformers model
    decoder = base.get_decoder()
    return Parts(
        base=base,
        embed=base.get_input_embeddings(),
        layers=list(_first_attr(decoder, ("layers", "h", "blocks"), "decoder layers")),
        norm=_first_attr(decoder, ("norm", "ln_f", "final_layernorm", "final_layer_norm"), "final norm"),
        head=base.get_output_embeddings(),
    )


# ---- hooks, always removed ------------------------------------------------------------------------------


@contextlib.contextmanager
def forward_hooks(*pairs: tuple[torch.nn.Module, Callable]) -> Iterator[None]:
    """Registers ``fn(module, inputs, output)`` on each module for the block; removes them on any exit."""
    handles = []
    try:
        for module, fn in pairs:
            handles.append(module.register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def capture_residuals(model) -> Iterator[list[torch.Tensor]]:
    """Yields a list that a forward fills with the residual stream: the embeddings, then each layer's output.

    Each entry is (B, T, H); there are num_layers + 1 of them after one forward.
    """
    parts = model_parts(model)
    states: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        states.append(output[0] if isinstance(output, tuple) else output)

    with forward_hooks((parts.embed, keep), *[(layer, keep) for layer in parts.layers]):
        yield states


@contextlib.contextmanager
def eager_attention(model) -> Iterator[None]:
    """Switches to eager attention (the only kind that returns its weights) and back afterwards."""
    base = model_parts(model).base
    before = base.config._attn_implementation
    try:
        if before != "eager":
            base.set_attn_implementation("eager")
        yield
    finally:
        if base.config._attn_implementation != before:
            base.set_attn_implementation(before)


@contextlib.contextmanager
def capture_attentions(model) -> Iterator[list[torch.Tensor]]:
    """Yields a list that a forward fills with each layer's attention weights (B, heads, T, T)."""
    maps: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        maps.append(output[1])  # attention modules return (output, weights)

    attns = [_first_attr(layer, ("self_attn", "attn", "attention"), "attention") for layer in model_parts(model).layers]
    with eager_attention(model), forward_hooks(*[(a, keep) for a in attns]):
        yield maps


# ---- views on a model -----------------------------------------------------------------------------------


def lens_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """The logit lens: a residual state (…, H) through the final norm and the output head -> (…, V)."""
    parts = model_parts(model)
    return parts.head(parts.norm(hidden))


@torch.no_grad()
def logit_lens(model, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-1 token of every layer at every position: probabilities (L+1, T), ids (L+1, T); and the logits (T, V).

    Row 0 is the embeddings, row L the last layer (its top-1 is the model's own prediction). One layer's
    logits at a time, so memory stays (T, V) even for large vocabularies.
    """
    with capture_residuals(model) as states:
        logits = model(input_ids=input_ids[None]).logits[0]
    probs, ids = zip(*(F.softmax(lens_logits(model, h[0]).float(), -1).max(-1) for h in states))
    return torch.stack(probs), torch.stack(ids), logits


@torch.no_grad()
def attention_maps(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Attention weights of every layer and head: (L, heads, T, T), row = query, column = key."""
    with capture_attentions(model) as maps:
        model(input_ids=input_ids[None])
    return torch.stack([m[0].float() for m in maps])


def input_x_gradient(
    model, input_ids: torch.Tensor, position: int = -1, target_id: Optional[int] = None
) -> tuple[torch.Tensor, int]:
    """Attribution of log p(target | tokens <= position) to each input token: sum over H of embedding x gradient.

    ``target_id`` defaults to the model's top prediction at ``position``; returns scores (T,) and the target.
    Tokens after ``position`` cannot influence it (causal attention), so their scores are 0.
    """
    embed = model_parts(model).embed
    with torch.enable_grad():
        x = embed(input_ids[None]).detach().requires_grad_(True)  # (1, T, H)
        logits = model(inputs_embeds=x).logits[0, position].float()  # (V,)
        if target_id is None:
            target_id = int(logits.argmax())
        logp = F.log_softmax(logits, dim=-1)[target_id]
        (grad,) = torch.autograd.grad(logp, x)
    return (grad * x).sum(-1)[0].detach(), target_id


# ---- everything at once ---------------------------------------------------------------------------------


@dataclass
class Inspection:
    """All views of one text. Row t of the per-row arrays is the prediction made after token t."""

    ids: list[int]  # (T,)
    tokens: list[str]  # (T,) each token decoded alone
    surprisal: torch.Tensor  # (T-1,) nats, of tokens 1..T-1
    entropy: torch.Tensor  # (T,) nats
    top_probs: torch.Tensor  # (T, k)
    top_ids: torch.Tensor  # (T, k)
    least_probs: torch.Tensor  # (T,)
    least_ids: torch.Tensor  # (T,)
    lens_probs: torch.Tensor  # (L+1, T)
    lens_ids: torch.Tensor  # (L+1, T)
    attentions: torch.Tensor  # (L, heads, T, T)
    attribution: torch.Tensor  # (T,)
    target_position: int
    target_id: int


def encode(tokenizer, text: str, add_bos: bool = True) -> torch.Tensor:
    """Token ids (T,) of ``text``, BOS first when the tokenizer has one (so the first word gets a surprisal)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if add_bos and tokenizer.bos_token_id is not None and (not ids or ids[0] != tokenizer.bos_token_id):
        ids = [tokenizer.bos_token_id] + ids
    return torch.tensor(ids, dtype=torch.long)


def inspect_ids(model, tokenizer, input_ids: torch.Tensor, k: int = 5, target_position: int = -1) -> Inspection:
    """Runs every view on ``input_ids`` (T,) in eval mode; the model is left as it was found; results on the CPU."""
    T = input_ids.numel()
    pos = target_position % T
    ids = input_ids.to(model_parts(model).embed.weight.device)
    with evaluating(model):
        lens_probs, lens_ids, logits = (x.cpu() for x in logit_lens(model, ids))
        attentions = attention_maps(model, ids).cpu()
        attribution, target_id = input_x_gradient(model, ids, pos)
    attribution = attribution.float().cpu()
    top_p, top_i = top_k(logits, k)
    least_p, least_i = least_likely(logits)
    input_ids = input_ids.cpu()
    return Inspection(
        ids=input_ids.tolist(),
        tokens=[tokenizer.decode([i]) for i in input_ids.tolist()],
        surprisal=surprisal(logits, input_ids),
        entropy=entropy(logits),
        top_probs=top_p,
        top_ids=top_i,
        least_probs=least_p,
        least_ids=least_i,
        lens_probs=lens_probs,
        lens_ids=lens_ids,
        attentions=attentions,
        attribution=attribution,
        target_position=pos,
        target_id=target_id,
    )
