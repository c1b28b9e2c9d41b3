"""From a run to something else runs it: a LoRA adapter merged into its base (``merge``), one GGUF file for
llama.cpp (``gguf``)."""

from lmforge.export.gguf import export_gguf
from lmforge.export.merge import find_adapter, merge_adapter, merged_model

__all__ = ["export_gguf", "find_adapter", "merge_adapter", "merged_model"]
