"""How outputs are scored, for evaluation and for training alike: metrics with their direction
(``metrics``), tasks that own their data, prompts and score (``tasks``), greedy generation scored by a
task (``generation``), and the least-likely measurements (``unlikeliness``)."""

from lmforge.scoring.generation import answer_budget, evaluate_generation, generate_completions
from lmforge.scoring.tasks import Task, load_task

__all__ = ["Task", "answer_budget", "evaluate_generation", "generate_completions", "load_task"]
