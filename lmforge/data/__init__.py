"""Data for training: readers (files, folders, hub datasets), formats, tokenized fine-tuning examples.

Importing the package registers the built-in formats (text, alpaca, chat, prompt_completion, template).
"""

from lmforge.data.examples import encode_prompt, load_examples, tokenize_example
from lmforge.data.formats import render
from lmforge.data.readers import read_records, read_rows

__all__ = ["encode_prompt", "load_examples", "read_records", "read_rows", "render", "tokenize_example"]
