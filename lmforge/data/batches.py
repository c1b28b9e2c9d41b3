"""Batches as a pure function of the step: ``train_step(step)`` always returns the same micro-batches.

That one property gives exact resume (no sampler state to save), and makes DDP and gradient
accumulation exact: every process draws the whole *global* batch (batch_size x grad_accum x world
rows), counts its target tokens, then keeps its own rows. So 1 x 8 accumulation, 8 x 1 and two
processes x 4 all see the same rows and divide by the same token count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmforge.losses.common import IGNORE


@dataclass
class Layout:
    batch_size: int  # rows per micro-batch per process
    grad_accum: int
    world: int = 1
    rank: int = 0

    @property
    def global_rows(self) -> int:
        return self.batch_size * self.grad_accum * self.world

    def mine(self, rows: list) -> list[list]:
        """Splits the global rows into this process's micro-batches (micro-batch k, rank r)."""
        B, W = self.batch_size, self.world
        return [rows[(k * W + self.rank) * B : (k * W + self.rank + 1) * B] for k in range(self.grad_accum)]


def _generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


class PackedStream:
    """Pretraining: random windows of ``block`` tokens from one token stream (nanoGPT-style)."""

    def __init__(self, train: torch.Tensor, val: torch.Tensor, block: int, layout: Layout, seed: int):
        if len(train) <= block + 1:
            raise ValueError(f"training text has {len(train)} tokens, fewer than one block of {block}")
        self.train, self.val, self.block, self.layout, self.seed = train, val, block, layout, seed

    def train_step(self, step: int) -> list[dict]:
        g = _generator(self.seed, step)
        starts = torch.randint(0, len(self.train) - self.block, (self.layout.global_rows,), generator=g)
        rows = [self.train[s : s + self.block] for s in starts.tolist()]
        # every position but the first is a target (labels are shifted inside the objective)
        num_tokens = self.layout.global_rows * (self.block - 1)
        return [self._batch(r, num_tokens) for r in self.layout.mine(rows)]

    def steps_per_epoch(self) -> float:
        """Optimizer steps that read as many tokens as the training stream holds."""
        return len(self.train) / (self.layout.global_rows * self.block)

    def val_batches(self, max_batches: int) -> list[dict]:
        """Consecutive non-overlapping blocks spread evenly over the validation stream."""
        n_blocks = (len(self.val) - 1) // self.block
        if n_blocks <= 0:
            return []
        B = self.layout.batch_size
        want = min(n_blocks, max_batches * B)
        idx = torch.linspace(0, n_blocks - 1, want).long().unique().tolist()
        rows = [self.val[i * self.block : (i + 1) * self.block] for i in idx]
        mine = rows[self.layout.rank :: self.layout.world]
        return [self._batch(mine[i : i + B], None) for i in range(0, len(mine), B)]

    @staticmethod
    def _batch(rows: list[torch.Tensor], num_tokens) -> dict:
        x = torch.stack(rows)
        n = num_tokens if num_tokens is not None else x.numel() - x.size(0)
        return {"input_ids": x, "labels": x, "num_tokens": n}


def collate(examples: list[dict], pad_id: int) -> dict:
    """Right-pads examples to the longest; PAD positions get label -100 and attention 0."""
    T = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def n_targets(example: dict) -> int:
    """Targets after the shift: labels[1:] that are not ignored."""
    return sum(1 for t in example["labels"][1:] if t != IGNORE)


class ExampleBatches:
    """Fine-tuning: tokenized examples, reshuffled every epoch by (seed, epoch), padded per micro-batch."""

    def __init__(
        self, train: list[dict], val: list[dict], layout: Layout, seed: int, pad_id: int, group_by_length: bool = False
    ):
        if not train:
            raise ValueError("no training examples")
        self.train, self.val, self.layout, self.seed, self.pad_id = train, val, layout, seed, pad_id
        self.group_by_length = group_by_length
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            perm = torch.randperm(len(self.train), generator=_generator(self.seed, -1 - epoch)).tolist()
            if self.group_by_length:
                perm = self._grouped(perm, _generator(self.seed, -1_000_000 - epoch))
            self._perms = {epoch: perm}
        return self._perms[epoch]

    def _grouped(self, perm: list[int], g: torch.Generator, mega: int = 32) -> list[int]:
        """Similar lengths share a global batch (less padding): each run of ``mega`` global batches of the
        shuffled order is sorted by length and cut into batches, whose order is then shuffled again."""
        G, out = self.layout.global_rows, []
        for start in range(0, len(perm), G * mega):
            chunk = sorted(perm[start : start + G * mega], key=lambda i: len(self.train[i]["input_ids"]))
            batches = [chunk[j : j + G] for j in range(0, len(chunk), G)]
            out += [i for b in torch.randperm(len(batches), generator=g).tolist() for i in batches[b]]
        return out

    def train_step(self, step: int) -> list[dict]:
        G, N = self.layout.global_rows, len(self.train)
        rows = []
        for i in range(step * G, (step + 1) * G):
            rows.append(self.train[self._perm(i // N)[i % N]])
        num_tokens = max(1, sum(n_targets(e) for e in rows))
        out = []
        for micro in self.layout.mine(rows):
            b = collate(micro, self.pad_id)
            b["num_tokens"] = num_tokens
            out.append(b)
        return out

    def steps_per_epoch(self) -> float:
        return len(self.train) / self.layout.global_rows

    def epoch_of(self, step: int) -> float:
        return step * self.layout.global_rows / len(self.train)

    def val_batches(self, max_batches: int) -> list[dict]:
        B = self.layout.batch_size
        mine = self.val[self.layout.rank :: self.layout.world][: max_batches * B]
        out = []
        for i in range(0, len(mine), B):
            b = collate(mine[i : i + B], self.pad_id)
            b["num_tokens"] = max(1, sum(n_targets(e) for e in mine[i : i + B]))
            out.append(b)
        return out
