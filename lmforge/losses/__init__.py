"""Losses as pure functions of tensors (``common``, ``least_likely``) and the registered training
objectives built from them (``objectives``: import it to register them)."""
