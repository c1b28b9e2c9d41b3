"""Checks a model, tokenizer, generation settings and data for the known pitfalls, before they cost a run.

Each check is a small registered function ``(Setup) -> list[Finding]`` that stays silent when it has
nothing to look at. ``lmforge generate`` and ``lmforge finetune`` call ``check(...)`` then
``raise_on_errors(...)``, so they refuse the same mistakes with the same messages as ``lmforge doctor``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from lmforge.core.errors import LmforgeError
from lmforge.core.registry import Registry

CHECKS = Registry("doctor check")
SEVERITIES = ("error", "warning", "info")
# Sampling knobs and their Hugging Face defaults: set to anything else, they only matter when sampling.
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "top_k": 50, "typical_p": 1.0, "min_p": None}
# Data formats: (name, the keys that identify a row, the key of the completion that must end with EOS).
# First match wins; chat rows get their EOS from the chat template.
ROW_KINDS = [
    ("chat", ("messages",), None),
    ("chat", ("conversations",), None),  # ShareGPT
    ("alpaca", ("instruction", "output"), "output"),
    ("prompt_completion", ("prompt", "completion"), "completion"),
    ("input_output", ("input", "output"), "output"),
    ("text", ("text",), "text"),
]
GENERATION_KEYS = {"max_length", "max_new_tokens", "do_sample", "eos_token_id", "pad_token_id", *SAMPLING_DEFAULTS}


@dataclass(frozen=True)
class Finding:
    """One problem: how bad it is, what is wrong and why, and what to do about it."""

    check: str
    severity: str  # error | warning | info
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.severity} [{self.check}]: {self.message}; fix: {self.fix}"


@dataclass
class Setup:
    """Everything a check may look at; any part may be None (the checks that need it stay silent)."""

    model: Any = None
    tokenizer: Any = None
    generation: Optional[dict] = None
    prompts: Optional[list[str]] = None
    rows: Optional[list[dict]] = None
    where: Optional[list[str]] = None  # "file:line" of each row, for messages
    append_eos: bool = True
    data_format: Optional[str] = None
    max_positions: Optional[int] = None
    purpose: str = "doctor"  # doctor | train | generate: how strict the PAD checks are
    _lengths: dict = field(default_factory=dict, repr=False)

    def row_at(self, i: int) -> str:
        return self.where[i] if self.where and i < len(self.where) else f"row {i + 1}"

    def n_tokens(self, text: str) -> int:
        """Token count without special tokens (cached: several checks measure the same prompts)."""
        if text not in self._lengths:
            self._lengths[text] = len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        return self._lengths[text]


def check(
    model=None,
    tokenizer=None,
    generation: Optional[dict] = None,
    prompts: Optional[list[str]] = None,
    rows: Optional[list[dict]] = None,
    append_eos: bool = True,
    data_format: Optional[str] = None,
    max_positions: Optional[int] = None,
    purpose: str = "doctor",
    where: Optional[list[str]] = None,
    only: Optional[list[str]] = None,
) -> list[Finding]:
    """Runs every registered check (or those named in ``only``); findings sorted errors first."""
    if purpose not in ("doctor", "train", "generate"):
        raise ValueError(f"purpose must be doctor, train or generate, got {purpose!r}")
    setup = Setup(model, tokenizer, generation, prompts, rows, where, append_eos, data_format, max_positions, purpose)
    findings = []
    for name in only or CHECKS.names():
        findings += CHECKS.get(name)(setup)
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def raise_on_errors(findings: list[Finding]) -> None:
    """Raises ``LmforgeError`` with the first error's message and fix; warnings pass."""
    for f in findings:
        if f.severity == "error":
            raise LmforgeError(f"{f.message}; fix: {f.fix}")


# ---- helpers -----------------------------------------------------------------------------------------


def row_kind(row: dict) -> Optional[str]:
    """Which of the known data formats a row is in (None when none fits)."""
    for kind, keys, _ in ROW_KINDS:
        if isinstance(row, dict) and all(k in row for k in keys):
            return kind
    return None


def completion_of(row: dict) -> Optional[str]:
    """The text the model learns to produce (the one that must end with EOS); None for chat rows."""
    key = next((c for kind, _, c in ROW_KINDS if kind == row_kind(row)), None)
    value = row.get(key) if key else None
    return value if isinstance(value, str) else None


def full_text(row: dict) -> str:
    """Every string of the row joined: an upper bound of what a training example holds."""
    if row_kind(row) == "chat":
        turns = row.get("messages") or row.get("conversations") or []
        return "\n".join(str(m.get("content", m.get("value", ""))) for m in turns if isinstance(m, dict))
    return "\n".join(v for v in row.values() if isinstance(v, str))


def max_positions(setup: Setup) -> Optional[int]:
    """The model's context: explicit, else its config, else a plausible tokenizer limit."""
    if setup.max_positions:
        return setup.max_positions
    cfg = getattr(setup.model, "config", None)
    n = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if n:
        return int(n)
    limit = getattr(setup.tokenizer, "model_max_length", None)
    return int(limit) if limit and limit < 1_000_000 else None  # HF puts 1e30 where there is no limit


def embedding_rows(model) -> Optional[int]:
    """Rows of the input embedding (the ids the model can take), or None without a model."""
    emb = model.get_input_embeddings() if model is not None and hasattr(model, "get_input_embeddings") else None
    return getattr(emb, "num_embeddings", None)


def _ids(value) -> set:
    return set(value) if isinstance(value, (list, tuple)) else ({value} if value is not None else set())


# ---- checks ------------------------------------------------------------------------------------------


@CHECKS.register("pad")
def check_pad(s: Setup) -> list[Finding]:
    """PAD must exist and differ from EOS: with PAD == EOS, masking padding masks every EOS too."""
    tok = s.tokenizer
    if tok is None or tok.eos_token is None or s.purpose == "generate":
        return []  # generation masks padding with the attention mask: PAD == EOS is harmless there
    if tok.pad_token is None:
        sev = "error" if s.purpose == "train" else "warning"
        return [
            Finding(
                "pad",
                sev,
                "the tokenizer has no PAD token: batches cannot be padded",
                "add a distinct PAD (lmforge.model.tokenizer.ensure_pad, then model.resize_token_embeddings)",
            )
        ]
    if tok.pad_token_id == tok.eos_token_id:
        return [
            Finding(
                "pad",
                "error",
                f"PAD is the same token as EOS ({tok.eos_token!r}, id {tok.eos_token_id}): "
                "masking padding out of the loss masks every EOS, so the model never learns to stop",
                "add a distinct PAD token (lmforge.model.tokenizer.ensure_pad, then model.resize_token_embeddings)",
            )
        ]
    return []


@CHECKS.register("eos")
def check_eos(s: Setup) -> list[Finding]:
    """A tokenizer without EOS cannot mark where a text ends; the model's EOS id should match the tokenizer's."""
    tok = s.tokenizer
    if tok is None:
        return []
    if tok.eos_token is None:
        return [
            Finding(
                "eos",
                "error",
                "the tokenizer has no EOS token: training cannot mark ends, generation never stops",
                "tokenizer.add_special_tokens({'eos_token': '</s>'}) then model.resize_token_embeddings",
            )
        ]
    out = []
    for where, value in (
        ("model.config", getattr(getattr(s.model, "config", None), "eos_token_id", None)),
        ("generation", (s.generation or {}).get("eos_token_id")),
    ):
        ids = _ids(value)
        if ids and tok.eos_token_id not in ids:
            out.append(
                Finding(
                    "eos",
                    "warning",
                    f"{where}.eos_token_id={value} but the tokenizer's EOS "
                    f"{tok.eos_token!r} is id {tok.eos_token_id}: generation stops on the wrong token",
                    f"set {where}.eos_token_id={tok.eos_token_id}",
                )
            )
    return out


@CHECKS.register("special_tokens")
def check_special_tokens(s: Setup) -> list[Finding]:
    """Every special token must be in the vocabulary (else it silently becomes UNK) and inside the embedding."""
    tok = s.tokenizer
    if tok is None:
        return []
    vocab = tok.get_vocab()
    rows = embedding_rows(s.model)
    out = []
    for name, value in tok.special_tokens_map.items():
        for t in value if isinstance(value, list) else [value]:
            if t not in vocab:
                out.append(
                    Finding(
                        "special_tokens",
                        "error",
                        f"{name} {t!r} is not in the vocabulary (it encodes as UNK, id {tok.unk_token_id})",
                        f"tokenizer.add_special_tokens({{'{name}': {t!r}}}) then model.resize_token_embeddings",
                    )
                )
            elif rows is not None and vocab[t] >= rows:
                out.append(
                    Finding(
                        "special_tokens",
                        "error",
                        f"{name} {t!r} has id {vocab[t]}, outside the model's {rows}-row embedding",
                        "model.resize_token_embeddings(len(tokenizer))",
                    )
                )
    return out


@CHECKS.register("vocab_size")
def check_vocab_size(s: Setup) -> list[Finding]:
    """More tokens than embedding rows: the extra ids index past the matrix (an IndexError, or garbage on GPU)."""
    rows = embedding_rows(s.model)
    if s.tokenizer is None or rows is None or len(s.tokenizer) <= rows:
        return []  # more rows than tokens is normal (rows are often padded to a multiple of 64)
    return [
        Finding(
            "vocab_size",
            "error",
            f"the tokenizer has {len(s.tokenizer)} tokens but the model's embedding has {rows} rows",
            "model.resize_token_embeddings(len(tokenizer)) and train the new rows",
        )
    ]


@CHECKS.register("data_rows")
def check_data_rows(s: Setup) -> list[Finding]:
    """Each row must be in a known format, else the data loader cannot tell prompt from completion."""
    for i, row in enumerate(s.rows or []):
        if row_kind(row) is None:
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            return [
                Finding(
                    "data_rows",
                    "error",
                    f"{s.row_at(i)}: row has keys {keys}, no known format",
                    "use instruction/input/output (Alpaca), messages (chat), prompt/completion, or text",
                )
            ]
    return []


@CHECKS.register("eos_in_data")
def check_eos_in_data(s: Setup) -> list[Finding]:
    """Completions must end with EOS (written in the data or appended), or the model never learns to stop."""
    if s.append_eos or not s.rows or s.tokenizer is None or not s.tokenizer.eos_token:
        return []
    eos = s.tokenizer.eos_token
    completions = [(i, c) for i, r in enumerate(s.rows) if (c := completion_of(r)) is not None]
    missing = [i for i, c in completions if not c.rstrip().endswith(eos)]
    if not missing:
        return []
    fix = f"append EOS when tokenizing (append_eos), or end every completion with {eos!r}"
    if len(missing) == len(completions):
        return [
            Finding(
                "eos_in_data",
                "error",
                f"none of the {len(completions)} completions ends with EOS {eos!r} "
                "and EOS is not appended: the model never learns to stop",
                fix,
            )
        ]
    return [
        Finding(
            "eos_in_data",
            "warning",
            f"{len(missing)} of {len(completions)} completions do not end with "
            f"EOS {eos!r} (first: {s.row_at(missing[0])}) and EOS is not appended",
            fix,
        )
    ]


@CHECKS.register("chat_template")
def check_chat_template(s: Setup) -> list[Finding]:
    """Chat rows are rendered with the tokenizer's chat template; without one there is no format to learn."""
    tok = s.tokenizer
    if tok is None or getattr(tok, "chat_template", None):
        return []
    chat = [i for i, r in enumerate(s.rows or []) if row_kind(r) == "chat"]
    if not chat and s.data_format not in ("chat", "sharegpt"):
        return []
    where = s.row_at(chat[0]) if chat else f"data.format={s.data_format}"
    return [
        Finding(
            "chat_template",
            "error",
            f"{where}: chat-formatted data but the tokenizer has no chat template",
            "set data.chat_template (chatml, llama3, zephyr, alpaca) or the tokenizer's own chat_template, "
            "or use data.format=template",
        )
    ]
