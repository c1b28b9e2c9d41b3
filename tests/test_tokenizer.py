from transformers import AutoTokenizer

from lmforge.model.tokenizer import JSON_ALPHABET, chars_per_token, ensure_pad, train_tokenizer
from tests.conftest import VERSE


def test_round_trip_and_special_tokens(tmp_path):
    tok = train_tokenizer([VERSE * 10], vocab_size=100, out_dir=tmp_path)
    assert len(tok) <= 100
    text = "Demain, dès l'aube,\n\tà l'heure où {\"canto\": [2, -1]}  \n"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert loaded.decode(loaded(text)["input_ids"]) == text
    ids = {loaded.pad_token_id, loaded.eos_token_id, loaded.bos_token_id, loaded.unk_token_id}
    assert None not in ids and len(ids) == 4  # PAD distinct from EOS
    vocab = loaded.get_vocab()
    assert all(ch in vocab for ch in JSON_ALPHABET)  # constrained JSON always has its characters


def test_unknown_characters_become_unk_and_merges_compress(tmp_path):
    tok = train_tokenizer([VERSE * 50], vocab_size=160, out_dir=tmp_path)
    assert tok.unk_token_id in tok("日本", add_special_tokens=False)["input_ids"]
    assert chars_per_token(tok, [VERSE]) > 1.5  # merges learned frequent groups


def test_ensure_pad_adds_distinct_pad(tiny_tokenizer):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.pad_token = tok.eos_token
    ensure_pad(tok)
    assert tok.pad_token_id != tok.eos_token_id


def test_split_digits_gives_one_token_per_digit(tmp_path):
    corpus = [("Canto 20, lines 14-28; in 1917 and 2024 " * 30) + VERSE]
    plain = train_tokenizer(corpus, vocab_size=160)
    split = train_tokenizer(corpus, vocab_size=160, split_digits=True)
    text = "lines 14-28 of Canto 120, 1917"
    ids = split(text, add_special_tokens=False)["input_ids"]
    digit_tokens = [split.convert_ids_to_tokens(i) for i in ids if any(c.isdigit() for c in split.decode([i]))]
    assert all(sum(c.isdigit() for c in t) == 1 for t in digit_tokens) and len(digit_tokens) == 11
    assert split.decode(ids) == text
    assert len(plain(" 1917", add_special_tokens=False)["input_ids"]) < 4  # merged digit runs without it
