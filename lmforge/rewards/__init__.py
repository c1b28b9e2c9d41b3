"""Rewards: plain callables with TRL's signature ``fn(prompts, completions, **columns) -> list[float]``,
registered by name in ``lmforge.core.registry.REWARDS`` (or a user's ``package.module:function``), and the
weighted sum a config declares (``combine``), each component kept for logging."""

from lmforge.rewards import builtin, verse  # noqa: F401  (registers the built-in rewards)
from lmforge.rewards.combine import Rewards, RewardTerm
from lmforge.rewards.verse import quatrains, rhyme_counts, rhyme_rate

__all__ = ["RewardTerm", "Rewards", "quatrains", "rhyme_counts", "rhyme_rate"]
