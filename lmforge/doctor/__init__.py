"""The doctor: checks for the known traps of a model, tokenizer, data and settings (``checks``, ``limits``), and the
readers of the files and configs it is pointed at (``inputs``). Training and generation run the same
checks first and refuse what they call errors."""

from lmforge.doctor import limits  # noqa: F401  (registers the generation and length checks, after checks.py's)
from lmforge.doctor.checks import CHECKS, GENERATION_KEYS, SEVERITIES, Finding, check, raise_on_errors

__all__ = ["CHECKS", "GENERATION_KEYS", "SEVERITIES", "Finding", "check", "raise_on_errors"]
