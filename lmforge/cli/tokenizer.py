"""``lmforge tokenizer train FILES... --vocab-size 128 --out tok/``."""

from __future__ import annotations

from lmforge.core.config import SourceConfig
from lmforge.core.errors import LmforgeError
from lmforge.data.text import source_texts
from lmforge.model.tokenizer import chars_per_token, train_tokenizer


def add_arguments(p):
    sub = p.add_subparsers(dest="action", required=True)
    t = sub.add_parser("train", help="train a BPE tokenizer that AutoTokenizer loads")
    t.add_argument("inputs", nargs="+", help="text files, folders of text files, or hub dataset names")
    t.add_argument("--vocab-size", type=int, default=256, help="total vocabulary, special tokens included")
    t.add_argument("--min-frequency", type=int, default=2)
    t.add_argument("--split-digits", action="store_true", help="one token per digit")
    t.add_argument("--out", required=True, help="output folder")


def run(args) -> int:
    if args.vocab_size < 32:
        raise LmforgeError(f"--vocab-size must be at least 32, got {args.vocab_size}")
    docs = [d for path in args.inputs for d in source_texts(SourceConfig(path=path))]
    tok = train_tokenizer(docs, args.vocab_size, args.out, args.min_frequency, split_digits=args.split_digits)
    sample = "".join(docs)[:500_000]
    print(f"trained {len(tok)}-token BPE on {sum(map(len, docs)):,} characters -> {args.out}")
    print(f"characters per token: {chars_per_token(tok, [sample]):.3f}")
    return 0
