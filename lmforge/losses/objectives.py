"""Objectives: ``(model, batch, reference) -> (loss, metrics)``, registered by name.

``batch`` holds ``input_ids`` (B, T), ``attention_mask`` (B, T), ``labels`` (B, T) with -100 where no
loss is taken, and ``num_tokens``: the count of target tokens in the *whole optimizer step* (every
micro-batch on every process). Dividing a micro-batch's summed loss by it makes accumulation exact:
batch 1 x accumulation 8 gives the same gradient as batch 8 x accumulation 1.
``reference(batch)`` returns the frozen reference model's logits (B, T, V) under no_grad, or is None.
The math lives in pure functions of tensors so tests can check it by hand.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Optional

import torch

from lmforge.core.errors import LmforgeError
from lmforge.core.registry import objective
from lmforge.losses.common import forward_logits, token_nll_sum
from lmforge.losses.least_likely import entropy_sum, hard_inverse_ce_sum, inverse_kl_sum, unlikelihood_sum
from lmforge.model.modes import evaluating
from lmforge.model.vocab import well_formed_mask


@objective("causal_lm")
def causal_lm(model, batch, reference=None):
    """Plain next-token cross-entropy."""
    logits = forward_logits(model, batch)
    nll = token_nll_sum(logits, batch["labels"])
    return nll / batch["num_tokens"], {"nll_sum": nll.detach()}


# ---------------------------------------------------------------------------------------------
# The reference model: the adapter-disabled model under LoRA, a frozen copy otherwise
# ---------------------------------------------------------------------------------------------


def make_reference(model, peft: bool) -> Callable[[dict], torch.Tensor]:
    """Returns ``reference(batch) -> logits (B, T, V)`` under no_grad, in eval mode (no dropout).

    With ``peft`` the reference is ``model`` itself with its adapters (and modules_to_save) disabled:
    no second copy of the weights. Without, a frozen deep copy taken now, before any training step.
    """
    if peft:
        if not hasattr(model, "disable_adapter"):
            raise LmforgeError("lora.method is lora/qlora but the model has no PEFT adapter to disable")
        target = model

        def reference(batch):
            with torch.no_grad(), evaluating(target), target.disable_adapter():
                return forward_logits(target, batch)
    else:
        target = copy.deepcopy(model).eval().requires_grad_(False)

        def reference(batch):
            with torch.no_grad():
                return forward_logits(target, batch)

    reference.model = target  # for inspection and tests
    return reference


# ---------------------------------------------------------------------------------------------
# Registered objectives: thin wrappers, ``(model, batch, reference, **objective_args)``
# ---------------------------------------------------------------------------------------------


def _against_reference(model, batch, reference, name: str, well_formed: bool, tokenizer):
    """The model's logits, the reference's, and the well-formed mask (BoolTensor[V]) if objective_args asks."""
    if reference is None:
        raise LmforgeError(f"train.objective={name} needs a reference model (the loop passes none)")
    ref = reference(batch)
    logits = forward_logits(model, batch)
    if not well_formed:
        return logits, ref, None
    if tokenizer is None:
        raise LmforgeError("train.objective_args.well_formed=true needs the tokenizer (the loop passes none)")
    return logits, ref, well_formed_mask(tokenizer, logits.size(-1))


@objective("least_likely", needs_reference=True, needs_tokenizer=True)
def least_likely(model, batch, reference=None, beta: float = 1.0, well_formed: bool = False, tokenizer=None):
    """Soft inverse distillation, KL(softmax(-beta z_ref) || q); objective_args: {beta: 1.0, well_formed: false}.

    With well_formed the target has no mass on special/byte/whitespace tokens (the loop passes
    ``tokenizer`` to objectives declaring ``needs_tokenizer``)."""
    logits, ref, allowed = _against_reference(model, batch, reference, "least_likely", well_formed, tokenizer)
    kl = inverse_kl_sum(logits, ref, batch["labels"], beta, allowed)
    return kl / batch["num_tokens"], {"inverse_kl_sum": kl.detach()}


@objective("least_likely_hard", needs_reference=True, needs_tokenizer=True)
def least_likely_hard(
    model, batch, reference=None, well_formed: bool = False, bottom: Optional[float] = None, tokenizer=None
):
    """Cross-entropy toward the reference's argmin; objective_args: {well_formed: false, bottom: null}.

    ``bottom`` (e.g. 0.02) targets the contextual argmin instead (see ``contextual_argmin_targets``)."""
    logits, ref, allowed = _against_reference(model, batch, reference, "least_likely_hard", well_formed, tokenizer)
    ce = hard_inverse_ce_sum(logits, ref, batch["labels"], allowed, bottom)
    return ce / batch["num_tokens"], {"argmin_ce_sum": ce.detach()}


@objective("unlikelihood")
def unlikelihood(model, batch, reference=None, alpha: float = 1.0):
    """MLE + alpha * token-level unlikelihood on previous-context tokens; objective_args: {alpha: 1.0}."""
    logits = forward_logits(model, batch)
    nll = token_nll_sum(logits, batch["labels"])
    ul = unlikelihood_sum(logits, batch["input_ids"], batch["labels"], batch.get("attention_mask"))
    loss = (nll + alpha * ul) / batch["num_tokens"]
    return loss, {"nll_sum": nll.detach(), "unlikelihood_sum": ul.detach()}


@objective("confidence_penalty")
def confidence_penalty(model, batch, reference=None, beta: float = 0.1):
    """Cross-entropy - beta * entropy; objective_args: {beta: 0.1}."""
    logits = forward_logits(model, batch)
    nll = token_nll_sum(logits, batch["labels"])
    ent = entropy_sum(logits, batch["labels"])
    return (nll - beta * ent) / batch["num_tokens"], {"nll_sum": nll.detach(), "entropy_sum": ent.detach()}
