"""From a run to something else runs it: a LoRA adapter merged into its base (``merge``)."""

from lmforge.export.merge import find_adapter, merge_adapter

__all__ = ["find_adapter", "merge_adapter"]
