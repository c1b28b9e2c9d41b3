"""Constrained JSON decoding through xgrammar, with budget-aware closing so the output is always valid.

A grammar alone is not enough: a model can open arrays or type digits until ``max_new_tokens`` runs out,
and a cut-off document is invalid. So at every step we also compute a *closing path*: the tokens that
finish the document fastest from the matcher's state (closers first, ``0`` for a number, forced text
from the grammar's jump-forward string). While the remaining budget is far above the path's length,
the model is free inside the grammar; near it, only tokens after which the document can still be
closed in time are kept (the model's top candidates that pass that check, plus the path's next token).
"Far" is decided without computing the path: each token has a bound on how much it can lengthen it
(a digit or a letter almost nothing, a ``[`` the shortest array element), and their sum since the last
computed path bounds the current one.

Usage with ``model.generate`` (one processor per call; it holds per-row matcher state)::

    proc = json_logits_processor(tokenizer, schema, max_new_tokens=64)   # schema=None: any JSON
    model.generate(**enc, max_new_tokens=64, logits_processor=LogitsProcessorList([proc]))

Whitespace between tokens is fixed (``json.dumps`` separators ``", "`` and ``": "``): with free
whitespace a random model fills the budget with blanks.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Optional

import numpy as np
import torch
import transformers

from lmforge.core.errors import LmforgeError, first_line, printable

STRUCTURAL = b'{}[]",:'
# Closing preference: finish a container, end a string, then the shortest values. Inside a string the
# closers are plain content, so there the quote comes first.
PRIORITY = ["}", "]", '"', ",", "0", "1", "n", "t", "f", ":", " ", "."]
IN_STRING = ['"'] + PRIORITY
# Characters that no JSON structure admits: if the grammar allows one, we are inside a string.
TEXT_ONLY = "qxzjkwyvQXZJKWYV"
_LOG_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: ")
MAX_CLOSE = 1024  # a closing path longer than this counts as "cannot close"
TOP_K = 8  # near the budget, this many of the model's best tokens are checked one by one


def _compiler(tokenizer, vocab_size: int):
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=[tokenizer.eos_token_id])
    return info, xgr.GrammarCompiler(info)


def _compile(compiler, schema: Optional[dict]):
    if schema is None:
        # any JSON value, without free whitespace (same reason as for schemas)
        return compiler.compile_json_schema({}, any_whitespace=False)
    return compiler.compile_json_schema(schema, any_whitespace=False)


def check_schema(schema: Any, source: str = "schema") -> Optional[dict]:
    """Returns ``schema`` if it is a usable JSON schema (or None for any JSON); else a one-line error."""
    if schema is None:
        return None
    if not isinstance(schema, dict):
        raise LmforgeError(f"{source}: a JSON schema is an object, got {type(schema).__name__}")
    import xgrammar as xgr

    try:
        xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False)
    except Exception as e:  # xgrammar raises RuntimeError/ValueError with a multi-line message
        first = _LOG_PREFIX.sub("", first_line(e))  # "[00:14:09] /project/cpp/json_schema_converter.cc:5082: "
        raise LmforgeError(f"{source}: invalid JSON schema: {first}") from None
    return schema


def _subschemas(node: Any):
    """Every dict below ``node`` that is itself a schema (properties, items, anyOf, $defs, ...)."""
    if not isinstance(node, dict):
        return
    yield node
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        for sub in (node.get(key) or {}).values():
            yield from _subschemas(sub)
    for key in ("items", "additionalProperties", "not", "if", "then", "else", "contains"):
        yield from _subschemas(node.get(key))
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in node.get(key) or []:
            yield from _subschemas(sub)


class JsonConstraint:
    """A compiled grammar for one tokenizer and schema; makes a fresh logits processor per generate call."""

    def __init__(self, tokenizer, schema: Optional[dict], vocab_size: Optional[int] = None):
        import xgrammar as xgr

        self.schema = check_schema(schema)
        self.vocab_size = vocab_size or len(tokenizer)
        self.info, compiler = _compiler(tokenizer, self.vocab_size)
        self.compiled = _compile(compiler, self.schema)
        self.stop_ids = list(self.info.stop_token_ids)
        self.tokenizer = tokenizer
        self._encoded: dict[str, list[int]] = {}  # forced text -> token ids (the same few strings recur)
        vocab = self.info.decoded_vocab  # list[bytes], one per token id
        # the cheapest token for each character, to spell closing text one character at a time
        self.char_ids = {
            v.decode("utf-8", "replace"): i
            for i, v in enumerate(vocab)
            if len(v) == 1 and i not in self.info.special_token_ids
        }
        self._check_spellable()
        self.priority_ids = [self.char_ids[c] for c in PRIORITY if c in self.char_ids]
        self.string_ids = [self.char_ids[c] for c in IN_STRING if c in self.char_ids]
        self.text_ids = [self.char_ids[c] for c in TEXT_ONLY if c in self.char_ids]
        # tokens the output may contain: not PAD/BOS/UNK (xgrammar would take their text inside strings)
        never = [i for i in tokenizer.all_special_ids if i not in self.stop_ids and i < self.vocab_size]
        never += list(range(len(tokenizer), self.vocab_size))
        ok = np.ones(self.vocab_size, dtype=bool)
        ok[never] = False
        self.ok_words = self._words(ok)
        # token sets as Python ints (bit t = token t): set tests on 1-2k bits cost far less than numpy calls
        self.ok_bits = _as_int(self.ok_words)
        self.stop_bits = sum(1 << t for t in self.stop_ids)
        self.bitmask = xgr.allocate_token_bitmask(1, self.vocab_size)
        shortest = self.closing_path(xgr.GrammarMatcher(self.compiled))
        if shortest == []:  # the grammar ends before any value: nothing satisfies the schema ({"anyOf": []})
            raise LmforgeError("schema: no JSON value satisfies it (an empty anyOf, a false subschema, ...)")
        if shortest is None:
            raise LmforgeError(
                "schema: no valid JSON found that this tokenizer can spell "
                "(a key or constant uses characters outside its vocabulary?)"
            )
        self.min_tokens = len(shortest)
        self.growth = self._growth(compiler, vocab)
        self.margin = int(self.growth.max())
        # per growth value, largest first: the bit words of the tokens that can grow the path that much
        self.growth_levels = [(int(g), _as_int(self._words(self.growth >= g))) for g in np.unique(self.growth)[::-1]]

    def _check_spellable(self) -> None:
        """Refuses a schema whose constant, enum value or property name this tokenizer cannot write (its
        encoding holds UNK): the grammar would let a model start one, then leave it no token to go on with."""
        unk = self.tokenizer.unk_token_id
        for sub in _subschemas(self.schema) if self.schema is not None and unk is not None else []:
            enum = sub.get("enum") if isinstance(sub.get("enum"), list) else []
            values = [*enum, *([sub["const"]] if "const" in sub else []), *(sub.get("properties") or {})]
            for value in values:
                text = json.dumps(value, ensure_ascii=False)
                if unk in self.tokenizer.encode(text, add_special_tokens=False):
                    raise LmforgeError(
                        f"schema: {printable(text[:40])} has characters this tokenizer cannot spell; a decode "
                        "could start it and find no token to go on with"
                    )

    def _words(self, flags: np.ndarray) -> np.ndarray:
        """(V,) booleans -> (ceil(V/32),) int32 bit words, xgrammar's bitmask layout."""
        flags = np.asarray(flags, dtype=bool)[: self.vocab_size]
        return np.packbits(np.pad(flags, (0, -len(flags) % 32)), bitorder="little").view(np.int32)

    def _growth(self, compiler, vocab) -> np.ndarray:
        """(V,) per token: how much accepting it can lengthen the closing path (an upper bound).

        One structural character can open at most one sub-structure, whose shortest instance (plus a key)
        bounds the growth. The other characters of a token, together, add at most a literal's tail
        (``f`` -> ``alse``), an escape's (``\\u`` -> 4 hex digits) or an exponent's digit: 8 is generous.
        """
        import xgrammar as xgr

        grow = 6
        for sub in _subschemas(self.schema) if self.schema else []:
            if not any(k in sub for k in ("properties", "items", "type", "anyOf", "oneOf", "allOf")):
                continue
            scoped = {**sub, **{k: self.schema[k] for k in ("$defs", "definitions") if k in self.schema}}
            keys = max((len(k) for k in (sub.get("properties") or {})), default=0)
            try:
                path = self.closing_path(xgr.GrammarMatcher(_compile(compiler, scoped)))
            except Exception:  # a fragment that does not compile alone ($ref into a parent): be generous
                path = [0] * 64
            grow = max(grow, len(path or [0] * 64) + keys + 6)
        structural = [sum(b in STRUCTURAL for b in v) for v in vocab]
        growth = np.array([n * grow + min(4 * (len(v) - n), 8) + 1 for v, n in zip(vocab, structural)], dtype=np.int64)
        return np.pad(growth, (0, max(0, self.vocab_size - len(growth))), constant_values=growth.max())

    def processor(self, max_new_tokens: int, greedy: bool = False) -> JsonLogitsProcessor:
        if max_new_tokens < self.min_tokens:
            raise LmforgeError(
                f"max_new_tokens={max_new_tokens} is too small for this schema: "
                f"its shortest valid JSON takes {self.min_tokens} tokens"
            )
        return JsonLogitsProcessor(self, max_new_tokens, greedy)

    # ---- the closing path -------------------------------------------------------------------------

    def _allowed(self, matcher) -> int:
        """The tokens the grammar allows next (special tokens removed), as an int: bit t = token t."""
        matcher.fill_next_token_bitmask(self.bitmask, 0)
        return _as_int(self.bitmask[0].numpy()) & self.ok_bits

    def _accept_text(self, matcher, text: str, path: list[int]) -> bool:
        """Accepts forced ``text``: as the tokenizer splits it if the grammar takes that, else char by char."""
        ids = self._encoded.get(text)
        if ids is None:
            ids = self._encoded[text] = self.tokenizer.encode(text, add_special_tokens=False)
        done = 0
        for t in ids:
            if not matcher.accept_token(t):
                break
            done += 1
        if done == len(ids):
            path.extend(ids)
            return True
        matcher.rollback(done)
        for ch in text:
            t = self.char_ids.get(ch)
            if t is None or not matcher.accept_token(t):
                return False
            path.append(t)
        return True

    def closing_path(self, matcher, limit: int = MAX_CLOSE) -> Optional[list[int]]:
        """Tokens that finish the document from ``matcher``'s state (not counting EOS); None if none found
        within ``limit`` tokens."""
        # Tokens are tried with accept_token (a rejected one leaves the state as it was), which costs far
        # less than filling a bitmask; the bitmask is only read when no preferred character fits.
        m = matcher.fork()
        path: list[int] = []
        probe = self.text_ids[0] if self.text_ids else None
        while len(path) <= limit:
            if m.is_terminated() or any(m.accept_token(s) for s in self.stop_ids):
                return path
            forced = m.find_jump_forward_string()
            if forced:
                if not self._accept_text(m, forced, path):
                    return None
                continue
            in_string = probe is not None and m.accept_token(probe)
            if in_string:
                m.rollback(1)
            pick = next((t for t in (self.string_ids if in_string else self.priority_ids) if m.accept_token(t)), None)
            if pick is None:  # e.g. inside an enum or a pattern: the first allowed token
                rest = self._allowed(m) & ~self.stop_bits
                pick = (rest & -rest).bit_length() - 1 if rest else None
                if pick is None or not m.accept_token(pick):
                    return None
            path.append(pick)
        return None

    def path_after(self, matcher, token_id: int, limit: int = MAX_CLOSE) -> Optional[list[int]]:
        """The closing path after ``token_id``; None if the grammar refuses it or cannot close."""
        if token_id in self.stop_ids:
            return []
        m = matcher.fork()
        if not m.accept_token(token_id):
            return None
        return self.closing_path(m, limit)


class JsonLogitsProcessor(transformers.LogitsProcessor):
    """Masks logits to the grammar and, near the end of the budget, to tokens that still let it close.

    ``greedy=True`` (argmax decoding): near the budget only the best safe token is kept, which is exact
    for argmax and checks fewer tokens. Otherwise the safe ones among the model's ``TOP_K`` best are kept.
    """

    def __init__(self, constraint: JsonConstraint, max_new_tokens: int, greedy: bool = False):
        self.c = constraint
        self.max_new_tokens = max_new_tokens
        self.greedy = greedy
        self.matchers: list = []
        self.prompt_len = 0
        self.bound: list[float] = []  # per row: an upper bound on the closing path's length
        self.known: list[dict] = []  # per row: token -> closing path after it, computed by the last check
        self.restricted_steps = 0  # how often the budget check narrowed the choice (for reports/tests)

    def _start(self, input_ids: torch.LongTensor) -> None:
        import xgrammar as xgr

        B = input_ids.shape[0]
        self.prompt_len = input_ids.shape[1]
        self.matchers = [xgr.GrammarMatcher(self.c.compiled) for _ in range(B)]
        self.bound = [float(self.c.min_tokens)] * B
        self.known = [{} for _ in range(B)]
        self.bitmask = xgr.allocate_token_bitmask(B, self.c.vocab_size)  # (B, ceil(V/32)) int32
        self.words = self.bitmask.numpy()  # the same memory, as numpy (cheaper per-row access)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # input_ids: (B, T) prompt + generated so far; scores: (B, V) next-token logits
        import xgrammar as xgr

        if not self.matchers:
            self._start(input_ids)
        elif input_ids.shape[1] > self.prompt_len:
            for i, (m, t) in enumerate(zip(self.matchers, input_ids[:, -1].tolist())):
                if not m.is_terminated():
                    m.accept_token(t)
                    self.bound[i] += int(self.c.growth[t])
                    self.known[i] = {"now": self.known[i].get(t)}
        remaining = self.max_new_tokens - (input_ids.shape[1] - self.prompt_len)  # this token included
        for i, m in enumerate(self.matchers):
            if m.is_terminated():  # finished rows get padding from generate: leave them free
                self.words[i] = -1
                continue
            m.fill_next_token_bitmask(self.bitmask, i)
            self.words[i] &= self.c.ok_words
            if remaining - self.bound[i] > self.c.margin:
                continue  # far from the budget: one token cannot make the document unclosable
            if remaining - self.bound[i] > self._step_margin(i):
                continue  # no token the grammar allows here can grow the path that much
            path = self.known[i].get("now")  # the last step's check already computed it
            path = self.c.closing_path(m, remaining) if path is None else path
            self.bound[i] = float("inf") if path is None else len(path)
            # if the model takes the path's next token, the following path is known without a search
            self.known[i] = {path[0]: path[1:]} if path else {}
            if path is not None and remaining - len(path) <= self._step_margin(i):
                self._restrict(i, m, path, scores[i], remaining)
        V = self.c.vocab_size
        out = scores.float().cpu() if scores.device.type not in ("cpu", "cuda") else scores.float()
        xgr.apply_token_bitmask_inplace(out, self.bitmask.to(out.device), vocab_size=min(V, out.shape[-1]))
        if out.shape[-1] > V:  # model vocabulary padded beyond the tokenizer's: never valid
            out[:, V:] = float("-inf")
        return out.to(scores.device, scores.dtype)

    def _step_margin(self, i: int) -> int:
        """The most any token allowed at this step (row ``i``'s bitmask) can lengthen the closing path."""
        words = _as_int(self.words[i])
        return next((g for g, level in self.c.growth_levels if words & level), 0)

    def _restrict(self, i: int, m, path: list[int], row: torch.Tensor, remaining: int) -> None:
        """Near the budget: keep only tokens after which the document still closes in ``remaining - 1``."""
        self.restricted_steps += 1
        words = self.words[i].view(np.uint32)
        allowed = torch.from_numpy(np.unpackbits(words.view(np.uint8), bitorder="little")[: row.shape[0]].astype(bool))
        masked = row.float().cpu()[: allowed.shape[0]].masked_fill(~allowed, float("-inf"))
        top = torch.topk(masked, min(TOP_K, int(allowed.sum()))).indices.tolist()
        nxt = path[0] if path else self.c.stop_ids[0]  # always safe: the closing path's next token
        safe = []
        self.known[i][nxt] = path[1:]
        for t in top:
            after = path[1:] if t == nxt else self.c.path_after(m, t, remaining)
            if after is not None and len(after) <= remaining - 1:
                safe.append(t)
                self.known[i][t] = after
                if self.greedy:
                    break
        words[:] = 0
        for t in safe + [nxt]:
            words[t >> 5] |= np.uint32(1 << (t & 31))


def _as_int(words: np.ndarray) -> int:
    """xgrammar bit words (little-endian int32s) as one Python int: bit t = token t."""
    return int.from_bytes(words.tobytes(), "little")


@functools.lru_cache(maxsize=8)
def _constraint(tokenizer, schema_json: str, vocab_size: Optional[int]) -> JsonConstraint:
    return JsonConstraint(tokenizer, json.loads(schema_json), vocab_size)


def json_constraint(tokenizer, schema: Optional[dict], vocab_size: Optional[int] = None) -> JsonConstraint:
    """The compiled constraint for ``tokenizer`` and ``schema`` (None: any JSON), cached."""
    return _constraint(tokenizer, json.dumps(schema, sort_keys=True), vocab_size)


def json_logits_processor(
    tokenizer, schema: Optional[dict], max_new_tokens: int, vocab_size: Optional[int] = None, greedy: bool = False
) -> JsonLogitsProcessor:
    """A fresh ``transformers.LogitsProcessor`` for one ``generate`` call; output is always valid JSON.

    ``schema`` None means any JSON value. ``vocab_size``: the model's if larger than the tokenizer's.
    ``greedy``: the caller decodes by argmax (cheaper checks near the budget, same result).
    """
    return json_constraint(tokenizer, schema, vocab_size).processor(max_new_tokens, greedy)
