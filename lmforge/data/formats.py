"""Formats turn a row into ``(prompt, completion)``: the model reads the prompt and learns the completion.

A format is a registered callable ``fn(row, *, tokenizer=None, template=None) -> (prompt, completion)``;
user code plugs in as ``data.format: "mypkg.formats:my_format"``. A missing column raises
``LmforgeError`` naming the column; ``render`` adds the row's ``file:line``. Conversations (``chat``,
``sharegpt``) are registered here too, but training reads them through ``lmforge.data.chat``.
"""

from __future__ import annotations

import json
import string
from typing import Any, Optional

from lmforge.core.errors import LmforgeError, first_line
from lmforge.core.registry import FORMATS
from lmforge.data.chat import conversation, resolve_template

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
        raise LmforgeError(
            "data.format=template needs data.template, e.g. '### Question: {input}\\n### Answer: {output}'"
        )
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
    return "".join(parts[:cut]), "".join(parts[cut + 1 :])


@FORMATS.register("chat")
def chat_format(
    row: dict, tokenizer=None, template: Optional[str] = None, sharegpt: bool = False, **_: Any
) -> tuple[str, str]:
    """A conversation as one pair: every turn before the last through the chat template plus the generation
    prompt (what ``generate`` will see), then the last assistant turn with its end-of-turn marker.

    Training does not use this pair: ``lmforge.data.examples`` trains every assistant turn of a chat row
    (``lmforge.data.chat``). ``template`` is a named chat template (chatml, llama3, ...) or Jinja text;
    none means the tokenizer's own. A BOS or EOS written by the template is stripped: tokenization adds
    each exactly once.
    """
    messages = conversation(row, sharegpt=sharegpt)
    if tokenizer is None:
        raise LmforgeError("format 'chat' needs a tokenizer")
    _, jinja = resolve_template(tokenizer, template)
    kwargs = {"tokenize": False, "chat_template": jinja}
    try:
        prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, **kwargs)
        full = tokenizer.apply_chat_template(messages, **kwargs)
    except Exception as e:  # jinja2 errors, raise_exception() in the template, ...
        first = first_line(e)
        raise LmforgeError(f"chat template failed: {first}") from None
    # a template that renders the last turn differently with history (rare) falls back to the content
    completion = full[len(prompt) :] if full.startswith(prompt) else messages[-1]["content"]
    bos, eos = getattr(tokenizer, "bos_token", None), getattr(tokenizer, "eos_token", None)
    if bos and prompt.startswith(bos):
        prompt = prompt[len(bos) :]
    completion = completion.rstrip()
    if eos and completion.endswith(eos):
        completion = completion[: -len(eos)]
    return prompt, completion


@FORMATS.register("sharegpt")
def sharegpt_format(row: dict, tokenizer=None, template: Optional[str] = None, **_: Any) -> tuple[str, str]:
    """ShareGPT ``conversations`` of ``{from, value}`` (human, gpt, system, tool...), as ``chat``."""
    return chat_format(row, tokenizer=tokenizer, template=template, sharegpt=True)
