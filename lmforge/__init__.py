"""lmforge: forge language models end to end, CPU first."""

__version__ = "0.1.0"
