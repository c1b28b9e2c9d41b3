"""``lmforge export merge``: the merged model computes the same logits as base + adapter, and stands alone."""

from __future__ import annotations

import json

import pytest
import torch

from lmforge.core.config import load_config
from lmforge.core.errors import LmforgeError
from tests.test_finetune import overrides, pad_eq_eos_dir, write_qa  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, pad_eq_eos_dir):  # noqa: F811
    """A LoRA run on a base whose PAD was EOS: fine-tuning grew the vocabulary by a distinct <pad>."""
    from lmforge.train.run import finetune

    tmp = tmp_path_factory.mktemp("lora_run")
    over = overrides(
        tmp,
        "lora",
        pad_eq_eos_dir,
        write_qa(tmp),
        **{"lora.method": "lora", "lora.r": 4, "lora.rslora": True, "train.lr": 3e-2, "train.max_steps": 8},
    )
    return finetune(load_config(None, over), quiet=True), pad_eq_eos_dir


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_logits_equal_unmerged_through_the_cli(tmp_path, lora_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge import cli

    run, base_dir = lora_run
    out = tmp_path / "merged"
    assert cli.main(["export", "merge", str(run), "--out", str(out)]) == 0
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)  # standalone: no PEFT needed
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.pad_token_id != tok.eos_token_id and merged.config.pad_token_id == tok.pad_token_id

    # the reference: PEFT's own loading of the unmerged adapter on the (grown) base
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    base.resize_token_embeddings(len(tok))
    unmerged = PeftModel.from_pretrained(base, str(run / "model")).eval()
    ids = torch.tensor(
        [tok('### Question: "sea"\n ### Answer: calm', add_special_tokens=False)["input_ids"] + [tok.pad_token_id]]
    )
    ref = _logits(unmerged, ids)
    torch.testing.assert_close(_logits(merged, ids), ref, atol=1e-5, rtol=1e-5)
    with unmerged.disable_adapter():  # the adapter did change the model: the parity is not vacuous
        assert (_logits(unmerged, ids) - ref).abs().max() > 1e-3


def test_merged_folder_generates_through_the_cli(tmp_path, lora_run, capsys):
    from lmforge import cli

    out = tmp_path / "merged"
    assert cli.main(["export", "merge", str(lora_run[0] / "model"), "--out", str(out), "--dtype", "fp32"]) == 0
    capsys.readouterr()
    assert (
        cli.main(
            [
                "generate",
                str(out),
                "--prompt",
                '### Question: "sea"\\n ### Answer: ',
                "--temperature",
                "0",
                "--max-new-tokens",
                "8",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith('### Question: "sea"\n ### Answer: ')


def test_export_mistakes_are_one_line(tmp_path, tiny_model_dir, lora_run, capsys):
    from lmforge import cli
    from lmforge.export import find_adapter, merge_adapter

    with pytest.raises(LmforgeError, match="full model, not a LoRA adapter"):
        find_adapter(tiny_model_dir)
    with pytest.raises(LmforgeError, match="adapter not found"):
        find_adapter(tmp_path / "nothing")
    with pytest.raises(LmforgeError, match="would overwrite the adapter"):
        merge_adapter(lora_run[0], lora_run[0] / "model")
    # a moved or offline base: the adapter names it, the error names it
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for f in (lora_run[0] / "model").iterdir():
        (adapter / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "nobody-here/gone-base"
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    assert cli.main(["export", "merge", str(adapter), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nobody-here/gone-base" in err
