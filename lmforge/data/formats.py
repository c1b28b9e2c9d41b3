"""Formats turn a row into ``(prompt, completion)``: the model reads the prompt and learns the completion.

A format is a registered callable ``fn(row, *, tokenizer=None, template=None) -> (prompt, completion)``;
user code plugs in as ``data.format: "mypkg.formats:my_format"``. A missing column raises
``LmforgeError`` naming the column; ``render`` adds the row's ``file:line``.
"""

from __future__ import annotations

import json
import string
from typing import Any, Optional

from lmforge.core.errors import LmforgeError, first_line
from lmforge.core.registry import FORMATS

# The Stanford Alpaca prompts, verbatim (with and without an input).
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def render(fmt: str, row: dict, where: str, tokenizer=None, template: Optional[str] = None) -> tuple[str, str]:
    """Applies the format named ``fmt`` to ``row``; any mistake is reported at ``where`` (file:line)."""
    fn = FORMATS.get(fmt)
    try:
        prompt, completion = fn(row, tokenizer=tokenizer, template=template)
    except LmforgeError as e:
        raise LmforgeError(f"{where}: {e}") from None
    except KeyError as e:  # a user format that indexes a missing column
        raise LmforgeError(f"{where}: format {fmt!r}: missing column {e.args[0]!r}") from None
    return prompt, completion


def column(row: dict, name: str, required: bool = True) -> str:
    """The column's value as text: strings as they are, objects and lists as JSON, null as missing."""
    value = row.get(name)
    if value is None:
        if required:
            have = ", ".join(map(repr, row)) or "none"
            raise LmforgeError(f"missing column {name!r} (columns: {have})")
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


@FORMATS.register("text")
def text_format(row: dict, **_: Any) -> tuple[str, str]:
    """Continued pretraining: the ``text`` column, every token a target."""
    return "", column(row, "text")


@FORMATS.register("prompt_completion")
def prompt_completion_format(row: dict, **_: Any) -> tuple[str, str]:
    """The ``prompt`` and ``completion`` columns, verbatim (put any separator in the data)."""
    return column(row, "prompt"), column(row, "completion")


@FORMATS.register("alpaca")
def alpaca_format(row: dict, **_: Any) -> tuple[str, str]:
    """``instruction``, optional ``input``, ``output`` in the standard Alpaca prompt."""
    instruction, extra = column(row, "instruction"), column(row, "input", required=False)
    output = column(row, "output")
    if extra.strip():
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=extra), output
    return ALPACA_NO_INPUT.format(instruction=instruction), output


def unescape(template: str) -> str:
    r"""``\n`` and ``\t`` typed in YAML single quotes or on a command line mean a newline and a tab."""
    return template.replace("\\n", "\n").replace("\\t", "\t")


def split_template(template: str) -> tuple[list[tuple[str, Optional[str], str, Optional[str]]], int]:
    """Parses ``template`` (``str.format`` syntax); returns its pieces and the index of the last field."""
    try:
        pieces = list(string.Formatter().parse(unescape(template)))
    except ValueError as e:
        raise LmforgeError(f"data.template {template!r}: {e}") from None
    fields = [i for i, piece in enumerate(pieces) if piece[1] is not None]
    if not fields:
        raise LmforgeError(f"data.template {template!r} has no {{column}} placeholder")
    if any(pieces[i][1] == "" or not pieces[i][1].isidentifier() for i in fields):
        raise LmforgeError(f"data.template {template!r}: every placeholder must name a column, like {{output}}")
    return pieces, fields[-1]


@FORMATS.register("template")
def template_format(row: dict, template: Optional[str] = None, **_: Any) -> tuple[str, str]:
    """``data.template`` with ``{column}`` placeholders; the last placeholder and all after it is the completion.

    ``'### Question: "{input}"\\n ### Answer: {output}'`` gives the prompt ``### Question: "q"\\n ### Answer: ``
    and the completion ``row["output"]``.
    """
    if not template:
        raise LmforgeError("data.format=template needs data.template, "
                           "e.g. '### Question: {input}\\n### Answer: {output}'")
    pieces, last = split_template(template)
    formatter = string.Formatter()
    parts = []
    for i, (literal, name, spec, conversion) in enumerate(pieces):
        parts.append(literal)
        if i == last:
            parts.append(None)  # the prompt/completion boundary: just before the last placeholder
        if name is not None:
            value = formatter.convert_field(column(row, name), conversion)
            parts.append(formatter.format_field(value, spec or ""))
    cut = parts.index(None)
    return "".join(parts[:cut]), "".join(parts[cut + 1:])


@FORMATS.register("chat")
def chat_format(row: dict, tokenizer=None, template: Optional[str] = None, **_: Any) -> tuple[str, str]:
    """``messages`` through the chat template; the completion is the last assistant turn.

    The prompt is every earlier turn plus the generation prompt (what ``generate`` will see); the
    completion is the template's text for the last assistant turn, end-of-turn marker included, so the
    model learns to close its turn. ``data.template``, when set, is the Jinja chat template to use.
    A BOS or EOS written by the template is stripped: tokenization adds each exactly once.
    """
    messages = _messages(row)
    if tokenizer is None:
        raise LmforgeError("format 'chat' needs a tokenizer")
    if not template and not getattr(tokenizer, "chat_template", None):
        raise LmforgeError(
            "format 'chat' needs a chat template: this tokenizer has none; set data.template to a Jinja "
            "chat template or use a tokenizer that ships one"
        )
    kwargs = {"tokenize": False, "chat_template": template or None}
    try:
        prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, **kwargs)
        full = tokenizer.apply_chat_template(messages, **kwargs)
    except Exception as e:  # jinja2 errors, raise_exception() in the template, ...
        first = first_line(e)
        raise LmforgeError(f"chat template failed: {first}") from None
    # a template that renders the last turn differently with history (rare) falls back to the content
    completion = full[len(prompt):] if full.startswith(prompt) else messages[-1]["content"]
    bos, eos = getattr(tokenizer, "bos_token", None), getattr(tokenizer, "eos_token", None)
    if bos and prompt.startswith(bos):
        prompt = prompt[len(bos):]
    completion = completion.rstrip()
    if eos and completion.endswith(eos):
        completion = completion[: -len(eos)]
    return prompt, completion


def _messages(row: dict) -> list[dict]:
    messages = row.get("messages")
    if messages is None:
        raise LmforgeError(f"missing column 'messages' (columns: {', '.join(map(repr, row)) or 'none'})")
    if isinstance(messages, str):  # CSV cells hold JSON text
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError:
            raise LmforgeError("column 'messages' is text, not a JSON list of {role, content}") from None
    if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m and "content" in m
                                                 for m in messages):
        raise LmforgeError("column 'messages' must be a list of {role, content} objects")
    if not messages or messages[-1]["role"] != "assistant":
        raise LmforgeError("column 'messages' must end with an assistant turn (the completion to learn)")
    return messages
