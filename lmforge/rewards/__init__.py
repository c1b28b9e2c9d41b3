"""Rewards: plain callables with TRL's signature ``fn(prompts, completions, **columns) -> list[float]``,
registered by name in ``lmforge.core.registry.REWARDS`` (or a user's ``package.module:function``), and the
weighted sum a config declares (``combine``), each component kept for logging; and the measures of generated
verse that ``lmforge eval`` reports (``measures``: rhyme rate, distinct-n, syllables per line)."""

from lmforge.rewards import builtin, lexicon, measures, verse  # noqa: F401  (registers the rewards and verse metrics)
from lmforge.rewards.combine import Rewards, RewardTerm
from lmforge.rewards.verse import quatrains, rhyme_counts, rhyme_rate

__all__ = ["RewardTerm", "Rewards", "quatrains", "rhyme_counts", "rhyme_rate"]
