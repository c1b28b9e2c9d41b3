"""Text generation over Hugging Face ``generate``: sampling and greedy (``generation``), least-likely
decoding (``least_likely``), JSON-constrained decoding (``constrained``)."""

from lmforge.generate.generation import GenerationSettings, generate, generate_ids, prompt_ids

__all__ = ["GenerationSettings", "generate", "generate_ids", "prompt_ids"]
