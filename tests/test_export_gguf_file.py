"""``lmforge export gguf`` read back with the ``gguf`` library (no llama.cpp needed): the weights are the model's,
Q/K rows in llama.cpp's order, the vocabulary is the tokenizer's in GGUF's byte alphabet, and bad inputs fail
with one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gguf import GGUFReader, TokenType
from gguf.vocab import bytes_to_unicode

from lmforge import cli
from lmforge.core.errors import LmforgeError
from lmforge.export import export_gguf
from lmforge.export.gguf import permute_qk
from lmforge.export.gguf_vocab import PRE_TOKENIZERS
from lmforge.model.tokenizer import PRETOKENIZE, PRETOKENIZE_DIGITS


def _field(reader: GGUFReader, key: str):
    return reader.fields[key].contents()


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf_file") / "tiny.gguf"
    assert cli.main(["export", "gguf", str(tiny_model_dir), "--out", str(out), "--type", "f32"]) == 0
    return out


def test_permute_puts_each_rotary_pair_side_by_side():
    # Hugging Face rotates element i with i + d/2 of each head; llama.cpp rotates 2i with 2i + 1
    n_head, d = 3, 8
    w = torch.arange(n_head * d * 2, dtype=torch.float32).reshape(n_head * d, 2)
    p = permute_qk(w, n_head)
    for h in range(n_head):
        for i in range(d // 2):
            assert torch.equal(p[h * d + 2 * i], w[h * d + i])
            assert torch.equal(p[h * d + 2 * i + 1], w[h * d + i + d // 2])


def test_weights_and_hyperparameters_are_the_models(exported, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = model.config
    r = GGUFReader(exported)
    assert _field(r, "general.architecture") == "llama"
    assert _field(r, "llama.block_count") == cfg.num_hidden_layers
    assert _field(r, "llama.embedding_length") == cfg.hidden_size
    assert _field(r, "llama.attention.head_count") == cfg.num_attention_heads
    assert _field(r, "llama.context_length") == cfg.max_position_embeddings
    tensors = {t.name: np.array(t.data).reshape(list(reversed(t.shape.tolist()))) for t in r.tensors}
    sd = model.state_dict()
    n_head = cfg.num_attention_heads
    np.testing.assert_array_equal(tensors["token_embd.weight"], sd["model.embed_tokens.weight"].numpy())
    q = permute_qk(sd["model.layers.1.self_attn.q_proj.weight"], n_head).numpy()
    np.testing.assert_array_equal(tensors["blk.1.attn_q.weight"], q)
    np.testing.assert_array_equal(tensors["blk.0.ffn_down.weight"], sd["model.layers.0.mlp.down_proj.weight"].numpy())
    np.testing.assert_array_equal(tensors["output_norm.weight"], sd["model.norm.weight"].numpy())
    # every weight of the model is there once (tied embeddings: no separate output matrix)
    assert len(tensors) == len([k for k in sd if k != "lm_head.weight" or not cfg.tie_word_embeddings])


def test_vocabulary_is_the_tokenizers_in_the_byte_alphabet(exported, tiny_tokenizer):
    r = GGUFReader(exported)
    decode = {c: b for b, c in bytes_to_unicode().items()}
    tokens, types = _field(r, "tokenizer.ggml.tokens"), _field(r, "tokenizer.ggml.token_type")
    assert _field(r, "tokenizer.ggml.model") == "gpt2" and _field(r, "tokenizer.ggml.pre") == "llama-bpe"
    special = set(tiny_tokenizer.all_special_ids)
    for i, (text, kind) in enumerate(zip(tokens, types)):
        if i in special:
            assert kind == TokenType.CONTROL and text == tiny_tokenizer.convert_ids_to_tokens(i)
        else:
            assert kind == TokenType.NORMAL
            assert bytes(decode[c] for c in text).decode("utf-8") == tiny_tokenizer.decode([i])
    for key, attr in (("bos", "bos"), ("eos", "eos"), ("unknown", "unk"), ("padding", "pad")):
        assert _field(r, f"tokenizer.ggml.{key}_token_id") == getattr(tiny_tokenizer, f"{attr}_token_id")
    assert _field(r, "tokenizer.ggml.add_bos_token") is True
    merges = _field(r, "tokenizer.ggml.merges")
    hf = json.loads(tiny_tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    multibyte = {c for t in tiny_tokenizer.get_vocab() for c in t if len(c.encode()) > 1}
    assert multibyte and len(merges) >= len(hf) + len(multibyte)  # each such character is rebuilt from bytes
    assert all(" " in m and m.count(" ") == 1 for m in merges)  # no raw space: llama.cpp splits on it


def test_both_training_regexes_are_llama_cpp_pre_tokenizers():
    assert PRE_TOKENIZERS[PRETOKENIZE] == "llama-bpe" and PRE_TOKENIZERS[PRETOKENIZE_DIGITS] == "qwen2"


def test_older_lmforge_tokenizers_are_refused_with_the_way_out(tmp_path, tiny_model_dir, capsys):
    import shutil

    folder = tmp_path / "legacy"
    shutil.copytree(tiny_model_dir, folder)
    tj = json.loads((folder / "tokenizer.json").read_text())
    tj["pre_tokenizer"]["pattern"]["Regex"] = r" ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]|\s+"
    (folder / "tokenizer.json").write_text(json.dumps(tj))
    assert cli.main(["export", "gguf", str(folder), "--out", str(tmp_path / "x.gguf")]) == 2
    assert "--pre gpt-2" in capsys.readouterr().err
    assert not (tmp_path / "x.gguf").exists()
    assert cli.main(["export", "gguf", str(folder), "--out", str(tmp_path / "x.gguf"), "--pre", "gpt-2"]) == 0
    assert _field(GGUFReader(tmp_path / "x.gguf"), "tokenizer.ggml.pre") == "gpt-2"


def test_other_architectures_are_refused(tmp_path, tiny_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tiny_tokenizer))).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    with pytest.raises(LmforgeError, match="Llama-architecture"):
        export_gguf(folder, tmp_path / "g.gguf")
