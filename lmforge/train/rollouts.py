"""Rollouts as a batch source for the one loop: ``train_step(step)`` samples K completions per prompt with the
current policy, scores them with the config's rewards, and returns the micro-batches the RL objectives take.

The prompts of a step, and the sampling seed, are functions of the step (as every batch source's rows are),
so a resumed run draws the same prompts; what it samples then depends on the weights, as it should, and the
replay buffer (``rl.replay``) is saved with each checkpoint (``state_dict``). With
``rl.reuse`` > 1 a batch of rollouts serves that many optimizer steps (the ratio to the sampling policy is
clipped); it is sampled again after a resume. Preference pairs (DPO) come from ``PairBatches``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lmforge.core.config import RunConfig
from lmforge.data.batches import Layout, collate
from lmforge.data.chat import stop_ids
from lmforge.data.examples import encode_prompt, tokenize_example
from lmforge.losses.common import IGNORE
from lmforge.losses.rl import grpo_advantages, rloo_advantages, token_logprobs
from lmforge.model.modes import evaluating
from lmforge.rewards import Rewards
from lmforge.rewards.measures import distinct_n


@torch.no_grad()
def sample(model, tokenizer, prompt_ids: list[list[int]], k: int, cfg, seed: int) -> list[list[int]]:
    """K sampled continuations (token ids, ending at the first stop token, which is kept) of each prompt, in
    prompt order: [p0 s0, p0 s1, ..., p1 s0, ...]. Seeded without touching the training RNG."""
    device = next(model.parameters()).device
    rows = [ids for ids in prompt_ids for _ in range(k)]
    enc = tokenizer.pad({"input_ids": rows}, padding=True, padding_side="left", return_tensors="pt")
    stops = stop_ids(tokenizer)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), evaluating(model):
        torch.manual_seed(seed)
        out = model.generate(
            input_ids=enc["input_ids"].to(device),
            attention_mask=enc["attention_mask"].to(device),
            do_sample=True,
            temperature=cfg.temperature,
            top_k=cfg.top_k or 0,
            top_p=cfg.top_p or 1.0,
            max_new_tokens=cfg.max_new_tokens,
            eos_token_id=stops,
            pad_token_id=tokenizer.pad_token_id,
        )
    done = []
    for row in out[:, enc["input_ids"].shape[1] :].tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), None)
        done.append(row if cut is None else row[: cut + 1])
    return done


def best_worst_pairs(examples: list[dict], rewards: torch.Tensor, k: int, pad_id: int) -> dict:
    """DPO pairs from scored rollouts: each prompt's best sample (chosen) against its worst (rejected). A prompt
    whose samples all score alike gives no pair; a batch without any holds one masked placeholder pair."""
    chosen, rejected = [], []
    for g in range(len(examples) // k):
        r = rewards[g * k : (g + 1) * k]
        best, worst = int(r.argmax()), int(r.argmin())
        if r[best] > r[worst]:
            chosen.append(examples[g * k + best])
            rejected.append(examples[g * k + worst])
    mask = [1.0] * len(chosen)
    if not chosen:
        chosen, rejected, mask = examples[:1], examples[:1], [0.0]
    batch = collate(chosen + rejected, pad_id)
    batch.update(num_pairs_here=len(chosen), pair_mask=torch.tensor(mask))
    return batch


class Rollouts:
    """The RL batch source: ``train_step(step)`` -> micro-batches of sampled, scored sequences."""

    def __init__(self, cfg: RunConfig, model, tokenizer, prompts: list[dict], rewards: Rewards, layout: Layout,
                 reference=None):  # fmt: skip
        self.cfg, self.rl, self.model, self.tokenizer = cfg, cfg.rl, model, tokenizer
        self.prompts, self.rewards, self.layout, self.reference = prompts, rewards, layout, reference
        self.k = cfg.rl.num_generations
        self._cache: dict[int, list[dict]] = {}
        self._buffer: dict[str, list[tuple[float, tuple[int, ...]]]] = {}  # prompt -> best (reward, ids)
        self._metrics: dict = {}
        self.eos = tokenizer.eos_token_id

    # ---- the loop's interface
    def train_step(self, step: int) -> list[dict]:
        key = step // self.rl.reuse
        if key not in self._cache:
            self._cache = {key: self._rollout(key, step)}
        return self._cache[key]

    def val_batches(self, max_batches: int) -> list[dict]:
        return []  # evaluation samples and scores held-out prompts instead (RewardEvaluator)

    def steps_per_epoch(self) -> float:
        return len(self.prompts) / self.layout.global_rows

    def step_metrics(self) -> dict:
        return self._metrics

    def state_dict(self) -> dict:
        """What a resume needs beyond the step: the replay buffer (the prompts and seeds are the step's)."""
        return {"replay": {p: [[r, list(ids)] for r, ids in kept] for p, kept in self._buffer.items()}}

    def load_state_dict(self, state: dict) -> None:
        self._buffer = {p: [(float(r), tuple(ids)) for r, ids in kept] for p, kept in state.get("replay", {}).items()}

    # ---- one batch of rollouts
    def _temperature(self, step: int) -> float:
        """T of log p_ref / T, annealed linearly from rl.ref_temperature to rl.ref_temperature_end."""
        end = self.rl.ref_temperature_end
        if end is None:
            return self.rl.ref_temperature
        frac = min(step / max(self.cfg.train.max_steps - 1, 1), 1.0)
        return self.rl.ref_temperature + frac * (end - self.rl.ref_temperature)

    def _rollout(self, key: int, step: int) -> list[dict]:
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + key)
        picks = torch.randint(0, len(self.prompts), (self.layout.global_rows,), generator=g).tolist()
        num_seqs = len(picks) * self.k
        batches, logs = [], []
        for i, micro in enumerate(self.layout.mine(picks)):
            b, log = self._micro_batch([self.prompts[j] for j in micro], self.cfg.seed * 7919 + key * 64 + i)
            b.update(
                num_seqs=num_seqs, num_pairs=len(picks), group_size=self.k, ref_temperature=self._temperature(step)
            )
            batches.append(b)
            logs.append(log)
        self._metrics = {k: sum(x[k] for x in logs) / len(logs) for k in logs[0]}
        return batches

    def _micro_batch(self, rows: list[dict], seed: int) -> tuple[dict, dict]:
        prompt_ids = [encode_prompt(r["prompt"], self.tokenizer) for r in rows]
        completions = sample(self.model, self.tokenizer, prompt_ids, self.k, self.rl, seed)
        if self.rl.replay:
            self._replay(rows, completions)
        examples, starts, lengths = [], [], []
        for n, c in enumerate(completions):
            p = prompt_ids[n // self.k]
            examples.append({"input_ids": p + c, "labels": [IGNORE] * len(p) + c})
            starts.append(len(p))
            lengths.append(len(c) - (1 if c and c[-1] == self.eos else 0))  # tokens before the stop
        batch = collate(examples, self.tokenizer.pad_token_id)
        batch["completion_start"] = torch.tensor(starts)
        batch["completion_len"] = torch.tensor(lengths)
        batch["eos_id"] = self.eos
        texts = [self.tokenizer.decode(c, skip_special_tokens=True) for c in completions]
        prompts = [r["prompt"] for r in rows for _ in range(self.k)]
        columns = {key: [r.get(key) for r in rows for _ in range(self.k)] for key in rows[0] if key != "prompt"}
        if self.rewards.needs_reference:
            columns["ref_mean_logprob"] = self._ref_mean_logprob(batch)
        total, parts = self.rewards(prompts, texts, **columns)
        if self.rl.replay:
            self._remember(prompts, completions, total)
        r = torch.tensor(total, dtype=torch.float32)
        batch["rewards"] = r
        grouped = r.view(-1, self.k)
        adv = grpo_advantages(grouped) if self.rl.algorithm == "grpo" else rloo_advantages(grouped)
        batch["advantages"] = adv.reshape(-1)
        if self.rl.algorithm == "dpo":  # online DPO: pairs from the rollouts themselves
            batch = best_worst_pairs(examples, r, self.k, self.tokenizer.pad_token_id)
        if self.rl.algorithm == "subtb":
            batch["prefix_rewards"] = self._prefix_rewards(prompts, completions, lengths, columns)
        if self.rl.reuse > 1:  # the sampling policy's log-probs, for the clipped ratio on later steps
            with torch.no_grad(), evaluating(self.model):
                dev = next(self.model.parameters()).device
                ids, mask = batch["input_ids"].to(dev), batch["attention_mask"].to(dev)
                logits = self.model(input_ids=ids, attention_mask=mask).logits
                batch["old_logprobs"] = token_logprobs(logits, batch["labels"].to(dev))[0].cpu()
        log = {"reward": r.mean().item(), "length": sum(lengths) / len(lengths), "distinct_2": distinct_n(texts)}
        for name, values in parts.items():
            ok = [v for v in values if not math.isnan(v)]
            log[f"reward/{name}"] = sum(ok) / len(ok) if ok else float("nan")
        return batch, log

    def _replay(self, rows: list[dict], completions: list[list[int]]) -> None:
        """The last ``rl.replay`` samples of each prompt become its best remembered sequences (if any)."""
        for g, row in enumerate(rows):
            best = self._buffer.get(row["prompt"], [])[: self.rl.replay]
            for j, (_, ids) in enumerate(best):
                completions[g * self.k + self.k - 1 - j] = list(ids)

    def _remember(self, prompts: list[str], completions: list[list[int]], rewards: list[float]) -> None:
        """Keeps each prompt's ``rl.replay_size`` best unique sequences."""
        for p, c, r in zip(prompts, completions, rewards):
            kept = self._buffer.setdefault(p, [])
            if all(ids != tuple(c) for _, ids in kept):
                kept.append((r, tuple(c)))
                kept.sort(key=lambda x: -x[0])
                del kept[self.rl.replay_size :]

    def _ref_mean_logprob(self, batch: dict) -> list[float]:
        dev = next(self.model.parameters()).device
        b = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in batch.items()}
        logp, mask = token_logprobs(self.reference(b), b["labels"])
        return (logp.sum(-1) / mask.sum(-1).clamp_min(1)).tolist()

    def _prefix_rewards(self, prompts, completions, lengths, columns) -> torch.Tensor:
        """The reward of every prefix y_<=i, i = 0..L, as if it stopped there (B, N+1); 0 past L."""
        n = max(lengths)
        out = torch.zeros(len(completions), n + 1)
        for b, (c, L) in enumerate(zip(completions, lengths)):
            texts = [self.tokenizer.decode(c[:i], skip_special_tokens=True) for i in range(L + 1)]
            cols = {k: [v[b]] * (L + 1) for k, v in columns.items()}
            total, _ = self.rewards([prompts[b]] * (L + 1), texts, **cols)
            out[b, : L + 1] = torch.tensor(total)
        return out


class PairBatches:
    """DPO: rows {prompt, chosen, rejected}; a micro-batch is its chosen rows then its rejected rows."""

    def __init__(self, train: list[dict], val: list[dict], tokenizer, layout: Layout, seed: int, context: int):
        self.layout, self.seed, self.pad = layout, seed, tokenizer.pad_token_id

        def encode(rows):
            return [(tokenize_example(r["prompt"], r["chosen"], tokenizer, context),
                     tokenize_example(r["prompt"], r["rejected"], tokenizer, context)) for r in rows]  # fmt: skip

        self.train, self.val = encode(train), encode(val)

    def _batch(self, pairs: list[tuple[dict, dict]], num_pairs: int) -> dict:
        b = collate([c for c, _ in pairs] + [r for _, r in pairs], self.pad)
        b.update(num_pairs=num_pairs, num_pairs_here=len(pairs), num_tokens=max(1, int((b["labels"] != IGNORE).sum())))
        return b

    def train_step(self, step: int) -> list[dict]:
        G, N = self.layout.global_rows, len(self.train)
        epoch_of = lambda i: torch.randperm(N, generator=torch.Generator().manual_seed(self.seed * 1_000_003 - i))
        rows = [self.train[epoch_of(i // N)[i % N]] for i in range(step * G, (step + 1) * G)]
        return [self._batch(m, G) for m in self.layout.mine(rows)]

    def steps_per_epoch(self) -> float:
        return len(self.train) / self.layout.global_rows

    def val_batches(self, max_batches: int) -> list[dict]:
        B = self.layout.batch_size
        mine = self.val[self.layout.rank :: self.layout.world][: max_batches * B]
        return [self._batch(mine[i : i + B], len(mine[i : i + B])) for i in range(0, len(mine), B)]


class RewardEvaluator:
    """Each evaluation: K samples for each held-out prompt, their mean reward and its components, distinct-2."""

    def __init__(self, cfg: RunConfig, tokenizer, prompts: list[dict], rewards: Rewards, reference=None):
        self.cfg, self.tokenizer, self.prompts = cfg, tokenizer, prompts
        self.rewards, self.reference = rewards, reference

    def __call__(self, model, step: int) -> dict[str, Any]:
        if not self.prompts:
            return {}
        layout = Layout(len(self.prompts), 1)
        src = Rollouts(self.cfg, model, self.tokenizer, self.prompts, self.rewards, layout, self.reference)
        _, log = src._micro_batch(self.prompts, self.cfg.seed)  # the same seed at every evaluation
        return {k if k.startswith("reward") else f"sample_{k}": v for k, v in log.items()}


def split_prompts(rows: list[dict], held_out: int) -> tuple[list[dict], list[dict]]:
    """The last ``held_out`` prompts are for evaluation (all of them train when there are too few)."""
    if held_out <= 0 or len(rows) <= held_out:
        return rows, rows[-held_out:] if held_out > 0 else []
    return rows[:-held_out], rows[-held_out:]
