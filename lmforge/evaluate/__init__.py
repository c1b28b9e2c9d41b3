"""Evaluation, the stage: language-model metrics on text (``lm``), one comparison table of models
(``compare``, ``report``), and the least-likely study table (``unlikeliness``). Task scoring itself
lives one layer down, in ``lmforge.scoring``, shared with the training loop."""
