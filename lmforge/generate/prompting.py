"""Prompts as the model was trained to read them: a plain prompt wrapped in the run's own training format.

A model fine-tuned on Alpaca rows was trained on ``### Instruction: ... ### Response:``; prompted raw it
rambles, prompted in its format it answers and stops at EOS. ``run_format`` finds the training format in
the run's saved config (beside the model folder); ``wrap`` applies it; ``chat`` applies a chat template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lmforge.core.config import DataConfig, load_run_config
from lmforge.core.errors import LmforgeError, first_line
from lmforge.data.formats import ALPACA_NO_INPUT, split_template, template_format, unescape
from lmforge.data.readers import Record

WRAPPED_FORMATS = ("alpaca", "template", "chat", "sharegpt")


def run_format(model: str | Path) -> Optional[DataConfig]:
    """The data section of the run a model folder came from (``runs/NAME``, its ``model/``, ``best/`` or a
    checkpoint's ``model/``), when it was trained on a format that wraps prompts; else None."""
    p = Path(model).resolve()
    for folder in (p, *list(p.parents)[:3]):
        if (folder / "config.yaml").is_file() and any((folder / d).exists() for d in ("model", "checkpoints")):
            data = load_run_config(folder / "config.yaml").data
            return data if data.format in WRAPPED_FORMATS else None
    return None


def wrap(prompt: str, data: DataConfig, tokenizer) -> str:
    """``prompt`` as the prompt part of one training example of ``data``'s format."""
    if data.format == "alpaca":
        return ALPACA_NO_INPUT.format(instruction=prompt)
    if data.format == "template":
        pieces, last = split_template(data.template or "")
        row = {name: prompt for _, name, _, _ in pieces if name is not None}
        row[pieces[last][1]] = ""
        return template_format(row, template=data.template)[0]
    if data.format in ("chat", "sharegpt"):
        return chat(prompt, tokenizer)
    return prompt


def chat(prompt: str, tokenizer) -> str:
    """One user turn through the tokenizer's chat template, ready for the assistant's reply."""
    if not getattr(tokenizer, "chat_template", None):
        raise LmforgeError("--chat: this tokenizer has no chat template (tokenizer_config.json has none)")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def fill_template(template: str, records: list[Record]) -> list[str]:
    """``template``'s ``{column}`` placeholders filled from each row (a typed ``\\n`` is a newline). A row
    without a column it names, or a template ``str.format`` refuses, is one line naming the row's place."""
    text = unescape(template)
    prompts = []
    for rec in records:
        try:
            prompts.append(text.format(**rec.row))
        except KeyError as e:
            raise LmforgeError(f"{rec.where}: no column {e.args[0]!r}, which --template uses") from None
        except (ValueError, IndexError, AttributeError, TypeError) as e:  # "{", "{0}", "{x.y}", "{x:d}"
            raise LmforgeError(f"{rec.where}: --template {template!r}: {first_line(e)}") from None
    return prompts
