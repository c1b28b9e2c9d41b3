"""A user's own plain callables, named by path (``tests.user_plugins:shouting_ratio``) in tests."""


def shouting_ratio(prediction: str, reference: str, **ctx) -> float:
    """Share of upper-case characters; it declares its direction as an attribute, as TRL-style callables do."""
    return sum(c.isupper() for c in prediction) / max(len(prediction), 1)


shouting_ratio.higher_is_better = False


def length_reward(prompts, completions, **kwargs):
    """A reward written for TRL (``reward_funcs=[length_reward]``): it runs unchanged as an lmforge reward."""
    return [float(len(c)) for c in completions]
