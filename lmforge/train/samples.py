"""Samples during training: an evaluator that writes ``samples/step-N.txt`` and TensorBoard text."""

from __future__ import annotations

from pathlib import Path

import torch

from lmforge.core.config import RunConfig
from lmforge.generate import GenerationSettings, generate
from lmforge.model.modes import evaluating


class Sampler:
    def __init__(self, cfg: RunConfig, tokenizer, run_dir: Path):
        self.cfg, self.tokenizer, self.dir = cfg.sample, tokenizer, run_dir / "samples"
        self.seed = cfg.seed

    def __call__(self, model, step: int, force: bool = False) -> dict:
        if not force and step % self.cfg.every:
            return {}
        s = GenerationSettings(
            max_new_tokens=self.cfg.max_new_tokens,
            temperature=self.cfg.temperature,
            top_k=self.cfg.top_k,
            top_p=self.cfg.top_p,
            seed=self.seed,
        )
        prompts = [p.replace("\\n", "\n") for p in self.cfg.prompts]  # '\n' in single-quoted YAML is a newline
        # generation seeds torch's generator: forked, so that the training's own random numbers (dropout masks)
        # after a sample are those of a run that does not sample
        cuda = [d for d in {p.device for p in model.parameters()} if d.type == "cuda"]
        with evaluating(model), torch.random.fork_rng(devices=cuda):
            texts = generate(model, self.tokenizer, prompts, s)
        self.dir.mkdir(parents=True, exist_ok=True)
        body = "\n\n---\n\n".join(p + t for p, t in zip(prompts, texts))
        (self.dir / f"step-{step:06d}.txt").write_text(body + "\n", encoding="utf-8")
        return {}
