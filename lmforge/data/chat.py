"""Chat rows: conversations (``messages`` or ShareGPT ``conversations``), named chat templates, and the
token spans each assistant turn adds, taken from the chat template itself.

A conversation is trained on its assistant turns (every one by default, ``data.assistant_turns: last``
for the last only): each turn's content and the token that closes it (``<|im_end|>``, ``<|eot_id|>``,
EOS), never its header (``<|im_start|>assistant\\n``), never a system, user or tool turn.

The spans come from ``{% generation %}...{% endgeneration %}`` in the template (the named templates here
all have them) through ``apply_chat_template(..., return_assistant_tokens_mask=True)``. A template
without those markers is rendered prefix by prefix; the text each assistant turn adds is its span, used
only when the whole rendering's tokens split exactly at those places (otherwise a one-line error).

The named templates need marker tokens a tokenizer may lack: ``prepare_tokenizer`` adds them (and sets
the template as the tokenizer's own, so a saved model carries it); the caller resizes the embeddings.
"""

from __future__ import annotations

import bisect
import difflib
import json
import re
from typing import Optional

from lmforge.core.config import DataConfig
from lmforge.core.errors import LmforgeError, first_line

CHAT_FORMATS = ("chat", "sharegpt")
"""Formats whose rows are conversations: ``chat`` reads ``messages`` or ``conversations``, ``sharegpt``
only ``conversations``."""

# ShareGPT speakers (``from``) and the role each is.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "function_call": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
}

CHATML = r"""{%- for message in messages -%}
{%- if message['role'] == 'assistant' -%}
{{- '<|im_start|>assistant\n' -}}
{%- generation -%}{{- message['content'] + '<|im_end|>' -}}{%- endgeneration -%}
{{- '\n' -}}
{%- else -%}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"""

# Meta's Llama 3 Instruct layout: BOS once, each turn's content trimmed and closed by <|eot_id|>.
LLAMA3 = r"""{{- bos_token -}}
{%- for message in messages -%}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' -}}
{%- if message['role'] == 'assistant' -%}
{%- generation -%}{{- message['content'] | trim + '<|eot_id|>' -}}{%- endgeneration -%}
{%- else -%}
{{- message['content'] | trim + '<|eot_id|>' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}{%- endif -%}"""

# HuggingFaceH4's Zephyr: <|role|>, a newline, the content closed by EOS, a newline.
ZEPHYR = r"""{%- for message in messages -%}
{%- if message['role'] not in ['system', 'user', 'assistant'] -%}
{{- raise_exception('the zephyr template has no ' + message['role'] + ' turn (system, user, assistant)') -}}
{%- endif -%}
{{- '<|' + message['role'] + '|>\n' -}}
{%- if message['role'] == 'assistant' -%}
{%- generation -%}{{- message['content'] + eos_token -}}{%- endgeneration -%}
{%- else -%}
{{- message['content'] + eos_token -}}
{%- endif -%}
{{- '\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}"""

# The Stanford Alpaca prompt as a conversation: a system preamble (the Alpaca one unless the first turn
# is a system turn), ### Instruction / ### Input / ### Response blocks, each answer closed by EOS.
ALPACA = r"""{{- bos_token -}}
{%- if messages and messages[0]['role'] == 'system' -%}
{{- messages[0]['content'] + '\n\n' -}}{%- set turns = messages[1:] -%}
{%- else -%}
{{- 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n' -}}
{%- set turns = messages -%}
{%- endif -%}
{%- for message in turns -%}
{%- if message['role'] == 'user' -%}
{{- '### Instruction:\n' + message['content'] + '\n\n' -}}
{%- elif message['role'] == 'tool' -%}
{{- '### Input:\n' + message['content'] + '\n\n' -}}
{%- elif message['role'] == 'assistant' -%}
{{- '### Response:\n' -}}
{%- generation -%}{{- message['content'] + eos_token -}}{%- endgeneration -%}
{{- '\n\n' -}}
{%- else -%}
{{- raise_exception('the alpaca template has no ' + message['role'] + ' turn after the first') -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '### Response:\n' -}}{%- endif -%}"""

TEMPLATES = {"chatml": CHATML, "llama3": LLAMA3, "zephyr": ZEPHYR, "alpaca": ALPACA}
"""The named chat templates (``data.chat_template: chatml``); ``tokenizer`` names the tokenizer's own."""
TEMPLATE_TOKENS = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "llama3": ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "zephyr": ("<|system|>", "<|user|>", "<|assistant|>"),
    "alpaca": (),
}
"""The marker tokens each named template writes besides the tokenizer's BOS and EOS."""
END_OF_TURN = ("<|im_end|>", "<|eot_id|>")
"""The tokens that close an assistant turn in the named templates where that is not EOS."""
NAMES = ("tokenizer", *TEMPLATES)

_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")


def is_chat(fmt: str) -> bool:
    return fmt in CHAT_FORMATS


def uses_chat(data_cfg: DataConfig) -> bool:
    """Whether any training or validation source of ``data_cfg`` is read as conversations."""
    return any(is_chat(s.format or data_cfg.format) for s in [*data_cfg.train, *data_cfg.val])


# ---- rows to conversations ------------------------------------------------------------------------------


def conversation(row: dict, sharegpt: bool = False) -> list[dict]:
    """The row's turns as ``[{role, content}]``: ``messages`` (``{role, content}``, OpenAI style) or
    ShareGPT ``conversations`` (``{from, value}``; a row's ``system`` column becomes the first turn).
    One-line errors; the caller adds the row's ``file:line``."""
    key = "conversations" if sharegpt or row.get("messages") is None else "messages"
    turns = row.get(key)
    if turns is None:
        have = ", ".join(map(repr, row)) or "none"
        wanted = "'conversations'" if sharegpt else "'messages' (or ShareGPT 'conversations')"
        raise LmforgeError(f"missing column {wanted} (columns: {have})")
    if isinstance(turns, str):  # CSV cells hold JSON text
        try:
            turns = json.loads(turns)
        except json.JSONDecodeError:
            raise LmforgeError(f"column {key!r} is text, not a JSON list of turns") from None
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise LmforgeError(f"column {key!r} must be a list of {{role, content}} or {{from, value}} objects")
    messages = [_turn(t, key, i) for i, t in enumerate(turns)]
    system = row.get("system")
    if (
        key == "conversations"
        and isinstance(system, str)
        and system
        and (not messages or messages[0]["role"] != "system")
    ):
        messages.insert(0, {"role": "system", "content": system})
    if not messages:
        raise LmforgeError(f"column {key!r} has no turns")
    if not any(m["role"] == "assistant" for m in messages):
        raise LmforgeError(
            f"column {key!r} has no assistant turn: nothing to learn (it must end with an assistant turn)"
        )
    if messages[-1]["role"] != "assistant":
        raise LmforgeError(
            f"column {key!r} must end with an assistant turn (the completion to learn), "
            f"not a {messages[-1]['role']} turn"
        )
    return messages


def _turn(turn: dict, key: str, i: int) -> dict:
    if "from" in turn and "role" not in turn:  # ShareGPT
        speaker = str(turn["from"]).strip().lower()
        if speaker not in SHAREGPT_ROLES:
            raise LmforgeError(
                f"{key}[{i}]: unknown role {turn['from']!r}; ShareGPT roles are {', '.join(SHAREGPT_ROLES)}"
            )
        role, content = SHAREGPT_ROLES[speaker], turn.get("value")
        out = {}
    elif "role" in turn:
        role, content = str(turn["role"]), turn.get("content")
        role = SHAREGPT_ROLES.get(role.lower(), role)  # human/gpt written as roles; other roles as they are
        out = {k: v for k, v in turn.items() if k not in ("role", "content")}  # tool_calls, name, ...
    else:
        raise LmforgeError(f"{key}[{i}] has neither 'role' nor 'from': {json.dumps(turn, ensure_ascii=False)[:60]}")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise LmforgeError(f"{key}[{i}] ({role}): the content must be text, not {type(content).__name__}")
    return {"role": role, "content": content, **out}


# ---- templates --------------------------------------------------------------------------------------------


def template_choice(data_cfg: DataConfig) -> Optional[str]:
    """``data.chat_template``; else ``data.template`` when the data is chat (a name, as LLaMA-Factory's
    ``template: llama3``, or Jinja text); None means the tokenizer's own."""
    if data_cfg.chat_template:
        return data_cfg.chat_template
    return data_cfg.template if is_chat(data_cfg.format) and data_cfg.template else None


def resolve_template(tokenizer, choice: Optional[str]) -> tuple[str, str]:
    """``(label, Jinja text)`` for a name (``chatml``...), ``tokenizer``/None (its own) or Jinja text."""
    if choice is None or choice.strip().lower() == "tokenizer":
        own = getattr(tokenizer, "chat_template", None)
        if not own:
            raise LmforgeError(
                "format 'chat' needs a chat template: this tokenizer has none; set "
                f"data.chat_template to one of {', '.join(TEMPLATES)} or to Jinja text "
                "(data.template is read the same way)"
            )
        return "tokenizer", own if isinstance(own, str) else tokenizer.get_chat_template()
    name = choice.strip()
    if name.lower() in TEMPLATES:
        return name.lower(), TEMPLATES[name.lower()]
    if "{%" in choice or "{{" in choice:
        return "jinja", choice
    close = difflib.get_close_matches(name.lower(), NAMES, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise LmforgeError(f"unknown chat template {choice!r}; {hint}choose from {', '.join(NAMES)} or write Jinja text")


def missing_tokens(tokenizer, label: str) -> list[str]:
    """The marker tokens the named template writes that are not single tokens of ``tokenizer``."""
    vocab = tokenizer.get_vocab()
    return [t for t in TEMPLATE_TOKENS.get(label, ()) if t not in vocab]


def chat_template_for(tokenizer, data_cfg: DataConfig) -> tuple[str, str]:
    """The template a chat source of ``data_cfg`` is rendered with; refuses a named template whose marker
    tokens the tokenizer lacks (``prepare_tokenizer`` adds them, and the model must grow with them)."""
    label, template = resolve_template(tokenizer, template_choice(data_cfg))
    missing = missing_tokens(tokenizer, label)
    if missing:
        raise LmforgeError(
            f"chat template {label} writes {', '.join(missing)}, which the tokenizer lacks; "
            "add them with lmforge.data.chat.prepare_tokenizer and resize the model's embeddings"
        )
    return label, template


def prepare_tokenizer(tokenizer, *data_cfgs: DataConfig) -> bool:
    """Gets ``tokenizer`` ready for the chat sources of ``data_cfgs``: adds the marker tokens their named
    templates need as special tokens, and makes the first chosen template the tokenizer's own (a saved
    model then carries the template it was trained with). Returns True when the vocabulary grew: resize
    the model's embeddings (``model.resize_token_embeddings(len(tokenizer), mean_resizing=True)``)."""
    from tokenizers import AddedToken

    before, own = len(tokenizer), None
    for cfg in data_cfgs:
        if cfg is None or not uses_chat(cfg):
            continue
        choice = template_choice(cfg)
        label, template = resolve_template(tokenizer, choice)
        missing = missing_tokens(tokenizer, label)
        if missing:
            tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
        if own is None and label != "tokenizer":
            own = template
    if own is not None:
        tokenizer.chat_template = own
    return len(tokenizer) > before


def stop_ids(tokenizer) -> list[int]:
    """Where a chat reply ends: EOS and the end-of-turn tokens of the named templates that the tokenizer has
    (``<|im_end|>``, ``<|eot_id|>``); generation of a chat-tuned model stops at any of them."""
    vocab = tokenizer.get_vocab()
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return ids + [vocab[t] for t in END_OF_TURN if t in vocab and vocab[t] not in ids]


# ---- the spans each assistant turn adds ---------------------------------------------------------------


def _render(tokenizer, messages: list[dict], template: str, **kwargs):
    try:
        return tokenizer.apply_chat_template(messages, chat_template=template, **kwargs)
    except LmforgeError:
        raise
    except Exception as e:  # jinja2 errors, raise_exception() in the template, ...
        raise LmforgeError(f"chat template failed: {first_line(e)}") from None


def assistant_spans(messages: list[dict], tokenizer, template: str) -> tuple[list[int], list[tuple[int, int]]]:
    """The conversation's token ids and one ``(start, end)`` token range per assistant turn: its content
    and the token that closes it, from the template's generation markers or its prefix renderings."""
    if _GENERATION.search(template):
        out = _render(tokenizer, messages, template, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
        spans, start = [], None
        for i, m in enumerate([*mask, 0]):
            if m and start is None:
                start = i
            elif not m and start is not None:
                spans.append((start, i))
                start = None
    else:
        ids, spans = _prefix_spans(messages, tokenizer, template)
    turns = sum(m["role"] == "assistant" for m in messages)
    if len(spans) != turns:
        raise LmforgeError(
            f"the chat template marks {len(spans)} assistant spans for {turns} assistant turns; "
            "put {% generation %} around each assistant turn's content and end token"
        )
    return ids, spans


def _prefix_spans(messages: list[dict], tokenizer, template: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Without generation markers: turn i's text is what rendering ``messages[:i + 1]`` adds to rendering
    ``messages[:i]`` with the generation prompt (its header), less trailing whitespace."""
    full = _render(tokenizer, messages, template, tokenize=False)
    chars, last = [], 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], template, tokenize=False, add_generation_prompt=True)
        after = _render(tokenizer, messages[: i + 1], template, tokenize=False)
        if not (after.startswith(before) and full.startswith(after)) or len(before) < last:
            raise LmforgeError(
                f"the chat template renders turn {i + 1} differently once later turns follow, so "
                "its tokens cannot be found exactly; add {% generation %} markers or pick a named "
                f"template ({', '.join(TEMPLATES)})"
            )
        last = max(len(before), len(after.rstrip()))
        chars.append((len(before), last))
    return _token_spans(full, chars, tokenizer)


def _token_spans(text: str, chars: list[tuple[int, int]], tokenizer) -> tuple[list[int], list[tuple[int, int]]]:
    """Character spans of ``text`` to token spans; an error unless every span edge is a token edge."""
    inexact = LmforgeError(
        "the chat template's assistant turns do not start and end on token boundaries, so "
        "their tokens cannot be found exactly; add {% generation %} markers to the template "
        f"or pick a named one ({', '.join(TEMPLATES)})"
    )
    edges = sorted({e for span in chars for e in span} - {0, len(text)})
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
        if any(s < e < t for e in edges for s, t in offsets):
            raise inexact
        ends = [t for _, t in offsets]
        spans = [(bisect.bisect_right(ends, a), bisect.bisect_right(ends, b)) for a, b in chars]
        if any(offsets[j][0] < a for (a, _), (x, y) in zip(chars, spans) for j in range(x, y)):
            raise inexact
        return ids, spans
    # a slow tokenizer has no offsets: the pieces between edges, tokenized apart, must join to the whole
    cuts = [0, *edges, len(text)]
    pieces = [
        tokenizer(text[a:b], add_special_tokens=False, verbose=False)["input_ids"] for a, b in zip(cuts, cuts[1:])
    ]
    ids = [t for p in pieces for t in p]
    if ids != list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]):
        raise inexact
    start_of = {c: sum(len(p) for p in pieces[:k]) for k, c in enumerate(cuts)}
    return ids, [(start_of[a], start_of[b]) for a, b in chars]
