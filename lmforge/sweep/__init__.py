"""Sweeps: an Optuna study over dotted config keys whose trials are ordinary runs (``lmforge sweep``)."""
