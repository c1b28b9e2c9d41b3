"""The lean decoding loop returns what Hugging Face ``generate`` returns: greedy and seeded samples, left-padded
batches of unequal prompts, EOS and per-row stopping, processors, GQA, and a LoRA-wrapped model."""

from __future__ import annotations

import pytest
import torch

from lmforge.core.config import ModelConfig
from lmforge.generate.decoding import decode, supports
from lmforge.model import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(tok, **kw):
    return build_model(ModelConfig(preset="tiny", context=256, **kw), tok, seed=0).eval()


def _batch(tok, texts):
    ids = [[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    enc = tok.pad({"input_ids": ids}, padding=True, padding_side="left", return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


TEXTS = ["The sea is calm tonight,", "Je", "Shall I compare thee to a summer's day?", "Demain, dès l'aube"]


def _both(model, tok, texts, **kw):
    ids, mask = _batch(tok, texts)
    kw = {"max_new_tokens": 24, "pad_token_id": tok.pad_token_id, **kw}
    seed = kw.pop("seed", 0)
    torch.manual_seed(seed)
    ref = model.generate(input_ids=ids, attention_mask=mask, **kw)
    torch.manual_seed(seed)
    lp, sc = kw.pop("logits_processor", None), kw.pop("stopping_criteria", None)
    ours = decode(model, ids, mask, **kw, logits_processor=lp or (), stopping_criteria=sc or ())
    return ref, ours


@pytest.mark.parametrize("texts", [TEXTS[:1], TEXTS], ids=["one", "left-padded"])
def test_greedy_equals_generate(tiny_tokenizer, texts):
    model = _model(tiny_tokenizer)
    ref, ours = _both(model, tiny_tokenizer, texts, do_sample=False, eos_token_id=None)
    assert ref.shape == ours.shape and torch.equal(ref, ours)


def test_seeded_sampling_equals_generate(tiny_tokenizer):
    model = _model(tiny_tokenizer)
    for temperature, top_k, top_p in ((1.0, 0, 1.0), (0.7, 20, 0.9)):
        ref, ours = _both(
            model, tiny_tokenizer, TEXTS, do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p, seed=3
        )
        assert torch.equal(ref, ours)


def test_eos_and_per_row_stopping_pad_finished_rows(tiny_tokenizer):
    from transformers import StoppingCriteria

    class AfterThree(StoppingCriteria):  # row 0 ends after 3 new tokens: the others continue
        def __init__(self, prompt_len):
            self.n = prompt_len

        def __call__(self, input_ids, scores, **kw):
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
            done[0] = input_ids.shape[1] - self.n >= 3
            return done

    model = _model(tiny_tokenizer)
    ids, _ = _batch(tiny_tokenizer, TEXTS)
    # the most common greedy token of the batch as "EOS": some rows stop on it, early
    free = decode(model, *_batch(tiny_tokenizer, TEXTS), 24, pad_token_id=tiny_tokenizer.pad_token_id)
    eos = int(free[:, ids.shape[1] :].flatten().mode().values)
    model.generation_config.eos_token_id = None  # only the EOS given below
    ref, ours = _both(model, tiny_tokenizer, TEXTS, do_sample=False, eos_token_id=eos)
    assert torch.equal(ref, ours) and (ours == tiny_tokenizer.pad_token_id)[:, ids.shape[1] :].any()
    crit = [AfterThree(ids.shape[1])]
    ref, ours = _both(model, tiny_tokenizer, TEXTS, do_sample=False, eos_token_id=[eos, 3], stopping_criteria=crit)
    assert torch.equal(ref, ours) and (ours[0, ids.shape[1] + 3 :] == tiny_tokenizer.pad_token_id).all()


def test_processors_see_the_same_sequences(tiny_tokenizer):
    from lmforge.generate.least_likely import least_likely_processors

    model = _model(tiny_tokenizer)
    procs = least_likely_processors(tiny_tokenizer, well_formed=True)
    ref, ours = _both(model, tiny_tokenizer, TEXTS, do_sample=False, eos_token_id=None, logits_processor=procs)
    assert torch.equal(ref, ours)


def test_grouped_query_attention_and_lora(tiny_tokenizer):
    from peft import LoraConfig, get_peft_model

    gqa = _model(tiny_tokenizer, num_kv_heads=2)
    ref, ours = _both(gqa, tiny_tokenizer, TEXTS, do_sample=False, eos_token_id=None)
    assert torch.equal(ref, ours)
    lora = get_peft_model(_model(tiny_tokenizer), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # a trained-looking adapter: it changes the output
    lora.eval()
    assert supports(lora)
    ref, ours = _both(lora, tiny_tokenizer, TEXTS, do_sample=False, eos_token_id=None)
    assert torch.equal(ref, ours)
    with lora.disable_adapter():
        base, _ = _both(lora, tiny_tokenizer, TEXTS, do_sample=False, eos_token_id=None)
    assert not torch.equal(base, ours)


def test_other_architectures_and_extra_processors_use_generate(tiny_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    assert not supports(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2)))
    model = _model(tiny_tokenizer)
    model.generation_config.repetition_penalty = 1.3
    assert not supports(model)
