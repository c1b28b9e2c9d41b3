"""Text generation over Hugging Face ``generate``: sampling and greedy (``generation``), least-likely
decoding (``least_likely``), JSON-constrained decoding (``constrained``)."""

from lmforge.generate.generation import GenerationSettings, generate

__all__ = ["GenerationSettings", "generate"]
