"""Packed fine-tuning batches (``data.packing: true``): examples laid end to end in rows of ``context`` tokens.

Packing without cross-contamination: every example keeps the loss and the attention it has alone.

- Each row carries ``position_ids`` that restart at 0 at every example (RoPE sees the example's own
  positions), and a block-diagonal causal mask (B, 1, T, T), True where a token may attend: inside its
  own example only. ``losses/common.py:forward_logits`` hands it to each attention kernel as it expects
  (booleans for sdpa, additive for eager, none for flash kernels, which split the rows at the restarts).
- The first token of every example gets label -100: position t predicts label t+1, so the last token of
  one example would otherwise be trained to predict the first token of the next. Alone, an example's
  first label is never a target either (``shift`` drops it): the targets are exactly the unpacked ones.
- The tail of a row is padding: ``pad_id``, label -100, positions 0, 1, ... (a segment of its own, so no
  real token attends to it and no padding token has nothing to attend to).

Batches stay a pure function of the step, as ``ExampleBatches``: every epoch the examples are ordered by
(seed, epoch), packed best-fit decreasing (ties in that order), and the rows shuffled by (seed, epoch).
The step draws the *global* rows, counts their targets (``num_tokens``), and keeps this process's.
Validation stays padded per example (``ExampleBatches.val_batches``): the same batches and numbers as an
unpacked run, which the evaluators that read per-example rows (task scores, unlikeliness) rely on.
"""

from __future__ import annotations

from bisect import bisect_left, insort

import torch

from lmforge.data.batches import ExampleBatches, Layout, _generator, n_targets
from lmforge.losses.common import IGNORE


def best_fit_decreasing(lengths: list[int], order: list[int], capacity: int) -> list[list[int]]:
    """Rows of indices whose lengths sum to at most ``capacity``: longest first (ties in ``order``'s order),
    each into the row it leaves the least room in, a new row when none has room."""
    rows: list[list[int]] = []
    by_room: dict[int, list[int]] = {}  # room left -> the rows with exactly that room
    rooms: list[int] = []  # the keys of by_room, sorted (at most capacity + 1 of them)
    for i in sorted(order, key=lambda i: -lengths[i]):
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"an example of {n} tokens does not fit a row of {capacity}")
        k = bisect_left(rooms, n)
        if k < len(rooms):
            room = rooms[k]
            r = by_room[room].pop()
            if not by_room[room]:
                del by_room[room], rooms[k]
        else:
            r, room = len(rows), capacity
            rows.append([])
        rows[r].append(i)
        if room - n > 0:
            if room - n not in by_room:
                by_room[room - n] = []
                insort(rooms, room - n)
            by_room[room - n].append(r)
    return rows


def block_causal_mask(position_ids: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool, True where query q may attend key k: k <= q and both in the same segment (a
    segment starts wherever the position is 0)."""
    seg = (position_ids == 0).cumsum(-1)  # (B, T)
    T = position_ids.size(-1)
    causal = torch.ones(T, T, dtype=torch.bool, device=position_ids.device).tril()
    return ((seg.unsqueeze(-1) == seg.unsqueeze(-2)) & causal).unsqueeze(1)


def pack(rows: list[list[dict]], pad_id: int, context: int) -> dict:
    """Rows of examples -> ``input_ids``, ``labels``, ``position_ids`` (B, T), ``attention_mask`` (B, 1, T, T)
    and ``real_tokens`` (the examples' tokens, padding excluded)."""
    ids, labels, pos, real = [], [], [], 0
    for row in rows:
        r_ids, r_labels, r_pos = [], [], []
        for e in row:
            n = len(e["input_ids"])
            r_ids += e["input_ids"]
            r_labels += [IGNORE] + list(e["labels"][1:])  # no target across the boundary (see above)
            r_pos += range(n)
        pad = context - len(r_ids)
        if pad < 0:
            raise ValueError(f"a row of {len(r_ids)} tokens is longer than the context of {context}")
        real += len(r_ids)
        ids.append(r_ids + [pad_id] * pad)
        labels.append(r_labels + [IGNORE] * pad)
        pos.append(r_pos + list(range(pad)))
    position_ids = torch.tensor(pos, dtype=torch.long)
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "position_ids": position_ids,
        "attention_mask": block_causal_mask(position_ids),
        "real_tokens": real,
    }


class PackedExamples(ExampleBatches):
    """Fine-tuning, packed: rows of ``context`` tokens, each a few whole examples kept apart (module docstring)."""

    def __init__(self, train: list[dict], val: list[dict], layout: Layout, seed: int, pad_id: int, context: int):
        super().__init__(train, val, layout, seed, pad_id, group_by_length=False)
        self.context = context
        self._lengths = [len(e["input_ids"]) for e in train]
        self._epoch_rows: dict[int, list[list[int]]] = {}
        # best-fit decreasing sees only the sorted lengths, the same every epoch: so is the number of rows
        self.rows_per_epoch = len(self._rows(0))

    def _rows(self, epoch: int) -> list[list[int]]:
        """The epoch's rows (lists of example indices), in the order the steps read them."""
        if epoch not in self._epoch_rows:
            rows = best_fit_decreasing(self._lengths, self._perm(epoch), self.context)
            order = torch.randperm(len(rows), generator=_generator(self.seed, -2_000_000 - epoch)).tolist()
            self._epoch_rows = {epoch: [rows[i] for i in order]}
        return self._epoch_rows[epoch]

    def train_step(self, step: int) -> list[dict]:
        G, R = self.layout.global_rows, self.rows_per_epoch
        rows = [[self.train[i] for i in self._rows(j // R)[j % R]] for j in range(step * G, (step + 1) * G)]
        num_tokens = max(1, sum(n_targets(e) for row in rows for e in row))
        out = []
        for micro in self.layout.mine(rows):
            b = pack(micro, self.pad_id, self.context)
            b["num_tokens"] = num_tokens
            out.append(b)
        return out

    def steps_per_epoch(self) -> float:
        return self.rows_per_epoch / self.layout.global_rows

    def epoch_of(self, step: int) -> float:
        return step * self.layout.global_rows / self.rows_per_epoch
