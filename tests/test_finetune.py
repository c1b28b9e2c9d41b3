"""Fine-tuning end to end on tiny saved Llama folders (the same loading path as a hub id).

LoRA trains only the adapters; the PAD rule makes a fine-tuned model stop (and its absence does not);
completion-only labels mask exactly the prompt; the best checkpoint is the best step; bad set-ups fail
with one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lmforge.core.config import ModelConfig, load_config
from lmforge.core.errors import LmforgeError
from lmforge.model import build_model
from lmforge.train.run import make_accelerator

# Q/A pairs short enough for a 0.1M-parameter model to fit in a few hundred steps.
QA = [("sea", "calm"), ("vent", "vivre"), ("day", "summer"), ("tide", "full")]
TEMPLATE = '### Question: "{input}"\\n ### Answer: {output}'  # YAML-quoted below: '#' starts a YAML comment


def write_qa(folder: Path, pairs=QA) -> Path:
    path = folder / "qa.jsonl"
    path.write_text("".join(json.dumps({"input": q, "output": a}) + "\n" for q, a in pairs), encoding="utf-8")
    return path


def prompt_of(question: str) -> str:
    return f'### Question: "{question}"\n ### Answer: '


def overrides(tmp_path: Path, name: str, base, data: Path, **extra) -> list[str]:
    """key=value overrides for a quick fine-tune of ``base`` on ``data`` (fp32: bit-exact comparisons)."""
    over = {
        "name": name,
        "out_dir": tmp_path / "runs",
        "log_dir": tmp_path / "logs",
        "model.base": base,
        "data.train": data,
        "data.format": "template",
        "data.template": f"'{TEMPLATE}'",
        "data.val_fraction": 0,
        "train.precision": "fp32",
        "train.batch_size": 4,
        "train.max_steps": 6,
        "train.warmup_steps": 0,
        "train.eval_every": 1000,
        "train.save_every": 1000,
        "sample.every": 100000,
        **extra,
    }
    return [f"{k}={v}" for k, v in over.items()]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pad_eq_eos_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny base whose tokenizer has PAD = EOS: the classic set-up of Llama fine-tuning scripts."""
    from transformers import PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("pad_eq_eos")
    tok_dir = tmp_path_factory.mktemp("tok_copy")
    tiny_tokenizer.save_pretrained(tok_dir)
    tok = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    tok.pad_token = tok.eos_token
    model = build_model(ModelConfig(preset="tiny"), tok, seed=0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_lora_trains_only_adapter_weights(tmp_path, tiny_model_dir):
    from lmforge.train.finetune import load_base, stage_data
    from lmforge.train.loop import train

    cfg = load_config(
        None,
        overrides(
            tmp_path,
            "lora",
            tiny_model_dir,
            write_qa(tmp_path),
            **{"lora.method": "lora", "lora.r": 4, "train.lr": 1e-2},
        ),
    )
    tok, model = load_base(cfg)  # the functions finetune() runs, so the model stays in hand
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert all(("lora_" in n) == p.requires_grad for n, p in model.named_parameters())
    acc = make_accelerator(cfg)
    train(cfg, model, tok, stage_data(cfg, cfg.data, tok, 64, acc), accelerator=acc)
    after = dict(model.named_parameters())
    base = [n for n in before if "lora_" not in n]
    lora_b = [n for n in before if "lora_B" in n]  # zero at init: must have moved
    assert base and lora_b
    assert all(torch.equal(before[n], after[n]) for n in base)  # bit-identical
    assert all(after[n].abs().sum() > 0 for n in lora_b)
    step = cfg.run_dir / "checkpoints" / "step-000006"
    saved = load_file(step / "model" / "adapter_model.safetensors")
    assert saved and all("lora_" in n for n in saved)  # checkpoints hold the adapters only, once
    assert sorted(p.name for p in step.glob("*.safetensors")) == ["optimizer.safetensors", "rng.safetensors"]


def test_completion_only_labels_mask_exactly_the_prompt(tmp_path, tiny_model_dir):
    from lmforge.train.finetune import load_base, stage_data

    cfg = load_config(None, overrides(tmp_path, "labels", tiny_model_dir, write_qa(tmp_path)))
    tok, _ = load_base(cfg)
    batch = stage_data(cfg, cfg.data, tok, 64, make_accelerator(cfg)).train_step(0)[0]
    answers = {q: a for q, a in QA}
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        ids, labels = ids[mask.bool()].tolist(), labels[mask.bool()].tolist()
        text = tok.decode(ids[1:], skip_special_tokens=False)
        question = text.split('"')[1]
        # by hand: BOS + the rendered prompt are masked, the answer and EOS are targets
        n_prompt = 1 + len(tok(prompt_of(question), add_special_tokens=False)["input_ids"])
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert labels[:n_prompt] == [-100] * n_prompt
        assert labels[n_prompt:] == ids[n_prompt:]
        assert tok.decode(labels[n_prompt:-1]) == answers[question]
    assert (batch["labels"][~batch["attention_mask"].bool()] == -100).all()  # padding never a target


def greedy_ids(model, tok, question: str, max_new_tokens: int) -> list[int]:
    """The new token ids of a greedy continuation of the training prompt (BOS + prompt)."""
    from lmforge.data.examples import encode_prompt

    ids = torch.tensor([encode_prompt(prompt_of(question), tok)])
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return out[0, ids.shape[1] :].tolist()


FIT = {"train.lr": 1e-2, "train.max_steps": 80, "train.min_lr_ratio": 1.0}  # loss < 0.01 by step 50


def test_pad_rule_stops_after_the_answer_and_pad_eq_eos_runs_on(tmp_path, pad_eq_eos_dir):
    from lmforge import cli
    from lmforge.data.batches import ExampleBatches, Layout
    from lmforge.data.examples import tokenize_example
    from lmforge.model import load_pretrained, load_tokenizer
    from lmforge.train.loop import train

    data, max_new = write_qa(tmp_path), 24
    # lmforge: the PAD rule adds a distinct <pad>; EOS ends every answer and is a target (through the CLI)
    (tmp_path / "ft.yaml").write_text("lora: {method: full}\n", encoding="utf-8")
    over = overrides(tmp_path, "pad-rule", pad_eq_eos_dir, data, **FIT)
    assert cli.main(["finetune", str(tmp_path / "ft.yaml"), *over]) == 0
    run = tmp_path / "runs" / "pad-rule"
    tok, model = load_tokenizer(run / "model"), load_pretrained(run / "model")
    assert tok.pad_token_id != tok.eos_token_id
    for q, a in QA:
        new = greedy_ids(model, tok, q, max_new)
        assert new[-1] == tok.eos_token_id and len(new) < max_new  # it stops
        assert tok.decode(new[:-1]) == a

    # control: PAD = EOS, and a collator that masks PAD positions also masks the EOS (the classic trap)
    tok = load_tokenizer(pad_eq_eos_dir)
    model = build_model(ModelConfig(preset="tiny"), tok, seed=0)
    model.load_state_dict(load_pretrained(pad_eq_eos_dir).state_dict())
    examples = []
    for q, a in QA:
        ex = tokenize_example(prompt_of(q), a, tok, 64)
        ex["labels"] = [-100 if t == tok.pad_token_id else lab for t, lab in zip(ex["input_ids"], ex["labels"])]
        examples.append(ex)
    cfg = load_config(None, overrides(tmp_path, "control", pad_eq_eos_dir, data, **FIT))
    train(
        cfg,
        model,
        tok,
        ExampleBatches(examples, [], Layout(4, 1), cfg.seed, tok.pad_token_id),
        accelerator=make_accelerator(cfg),
    )
    for q, a in QA:
        new = greedy_ids(model, tok, q, max_new)
        assert tok.decode(new).startswith(a)  # it learned the answer ...
        assert len(new) == max_new and tok.eos_token_id not in new  # ... and never stops


def test_best_checkpoint_is_the_best_step_ties_to_the_earlier(tmp_path, tiny_tokenizer):
    from lmforge.data.batches import ExampleBatches, Layout
    from lmforge.data.examples import tokenize_example
    from lmforge.train.loop import train

    scores = {1: 0.1, 2: 0.7, 3: 0.9, 4: 0.9, 5: 0.2}  # best at step 3 (step 4 ties: the earlier wins)
    cfg = load_config(
        None,
        [
            f"out_dir={tmp_path}",
            "name=best",
            f"log_dir={tmp_path / 'logs'}",
            "train.precision=fp32",
            "train.max_steps=5",
            "train.eval_every=1",
            "train.save_every=1",
            "train.keep_last=10",
            "train.best_metric=score",
            "train.batch_size=2",
            "train.lr=1e-2",
        ],
    )
    model = build_model(ModelConfig(preset="tiny"), tiny_tokenizer, seed=0)
    ex = [tokenize_example(prompt_of(q), a, tiny_tokenizer, 64) for q, a in QA]
    res = train(
        cfg,
        model,
        tiny_tokenizer,
        ExampleBatches(ex, [], Layout(2, 1), 0, tiny_tokenizer.pad_token_id),
        evaluators=(lambda m, step: {"score": scores[step]},),
        accelerator=make_accelerator(cfg),
    )
    assert res.best_metric == 0.9
    best = load_file(cfg.run_dir / "best" / "model.safetensors")
    step = lambda n: load_file(cfg.run_dir / "checkpoints" / f"step-{n:06d}" / "model" / "model.safetensors")
    for k in best:
        assert torch.equal(best[k], step(3)[k])
    assert any(not torch.equal(best[k], step(4)[k]) for k in best)
    state = json.loads((cfg.run_dir / "checkpoints" / "step-000005" / "state.json").read_text())
    assert state["best_step"] == 3
    # best/ is a link to one complete folder, swapped in one rename; earlier bests are gone
    assert (cfg.run_dir / "best").is_symlink() and (cfg.run_dir / "best").resolve().name == ".best-step-000003"
    assert sorted(p.name for p in cfg.run_dir.glob(".best*")) == [".best-step-000003"]


def test_best_by_val_loss_with_a_known_minimum(tmp_path, tiny_model_dir):
    """best/ holds the weights of the step with the lowest logged val_loss (the earliest on a tie)."""
    from lmforge.train.run import finetune

    data = write_qa(tmp_path)
    over = overrides(
        tmp_path,
        "val",
        tiny_model_dir,
        data,
        **{
            "data.val": str(data),
            "train.eval_every": 1,
            "train.max_steps": 4,
            "train.lr": 3e-2,
            "train.save_every": 1,
            "train.keep_last": 10,
        },
    )
    run = finetune(load_config(None, over), quiet=True)
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    val = {r["step"]: r["val_loss"] for r in rows if "val_loss" in r}
    best_step = min(val, key=lambda s: (val[s], s))
    ck = load_file(run / "checkpoints" / f"step-{best_step:06d}" / "model" / "model.safetensors")
    best = load_file(run / "best" / "model.safetensors")
    assert all(torch.equal(best[k], ck[k]) for k in best)


def test_hub_id_offline_fails_with_one_line_naming_it(tmp_path, capsys, monkeypatch):
    from lmforge import cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {base: nobody-here/no-such-model-42}\n", encoding="utf-8")
    code = cli.main(["finetune", str(cfg), f"out_dir={tmp_path}", "data.train=x.jsonl", "train.precision=fp32"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "nobody-here/no-such-model-42" in err and "Traceback" not in err


def test_trust_remote_code_stays_off_unless_configured(tmp_path, tiny_model_dir):
    """A base shipping its own code: lmforge never imports it unless model.trust_remote_code is set."""
    import shutil

    from lmforge.train.finetune import load_base

    base = tmp_path / "remote"
    shutil.copytree(tiny_model_dir, base)
    sentinel = tmp_path / "code-ran"
    (base / "custom.py").write_text(
        f"open({str(sentinel)!r}, 'w').close()\nraise RuntimeError('custom code ran')\n", encoding="utf-8"
    )
    config = json.loads((base / "config.json").read_text())
    config.update(
        model_type="lmforge_custom", auto_map={"AutoConfig": "custom.Config", "AutoModelForCausalLM": "custom.Model"}
    )
    (base / "config.json").write_text(json.dumps(config))
    data = write_qa(tmp_path)
    with pytest.raises(LmforgeError):
        load_base(load_config(None, overrides(tmp_path, "r", base, data)))
    assert not sentinel.exists()
    with pytest.raises(RuntimeError, match="custom code ran"):  # the shipped code ran, and it says so
        load_base(load_config(None, overrides(tmp_path, "r", base, data, **{"model.trust_remote_code": True})))
    assert sentinel.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="QLoRA runs where there is CUDA")
def test_qlora_on_cpu_says_to_use_lora(tmp_path, tiny_model_dir):
    from lmforge.train.run import finetune

    cfg = load_config(None, overrides(tmp_path, "q", tiny_model_dir, write_qa(tmp_path), **{"lora.method": "qlora"}))
    with pytest.raises(LmforgeError, match=r"lora\.method=lora"):
        finetune(cfg, quiet=True)
