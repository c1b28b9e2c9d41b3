"""The ``rl`` section of a run's config: the algorithm, its rewards, the rollouts and the reference.

rl:
  algorithm: rloo              # rloo | grpo | tb | subtb | dpo
  prompts: ["The ", "A "]      # or prompts_file (JSONL rows with "prompt" and columns), or task
  num_generations: 8           # K completions per prompt
  rewards:
    - {name: rhyme_en, weight: 1.0, args: {scheme: AABB}}
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ALGORITHMS = ("rloo", "grpo", "tb", "subtb", "dpo")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RewardSpec(_Section):
    name: str
    """A registered reward (rhyme_fr, rhyme_en, syllables, json_valid, schema_valid, score, fluency) or
    package.module:function with TRL's signature fn(prompts, completions, **columns) -> list[float]."""
    weight: float = 1.0
    args: dict[str, Any] = {}
    """Keyword arguments of the reward, e.g. {scheme: ABAB} or {task: examples/cantos/task.yaml}."""
    label: Optional[str] = None
    """The component's name in the logs (default: name); lets one reward appear twice with other args,
    e.g. score with the task's field F1 and, labelled exact, score with {metric: json_em} as a bonus."""


class RLConfig(_Section):
    algorithm: Optional[Literal["rloo", "grpo", "tb", "subtb", "dpo"]] = None
    """rloo / grpo (policy gradient with group baselines), tb / subtb (GFlowNet: trajectory balance, modified
    sub-trajectory balance), dpo (preference pairs from data.train: prompt, chosen, rejected; without data.train,
    each prompt's best sample against its worst, as the rewards score them)."""
    prompts: list[str] = []
    """Prompts to sample from (rollouts); '\\n' in single-quoted YAML is a newline."""
    prompts_file: Optional[str] = None
    """A JSONL file of rows with a "prompt" key; the other keys reach the rewards as columns."""
    task: Optional[str] = None
    """A task (YAML, name, package.module:function): its rows' prompts, and the rows as columns (reward: score)."""
    eval_prompts: int = Field(4, ge=0)
    """Prompts held out from training (the last ones) on which each evaluation samples and scores."""
    rewards: list[RewardSpec] = []
    num_generations: int = Field(4, ge=2)
    """K: completions sampled per prompt (the group of RLOO/GRPO baselines and of TB's log Z estimate)."""
    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature of the rollouts (above 1: GFlowNet's tempered off-policy exploration)."""
    top_k: Optional[int] = Field(None, ge=1)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    kl_coef: float = Field(0.05, ge=0)
    """rloo/grpo: weight of the token-level KL to the reference (k3 estimator)."""
    clip_eps: float = Field(0.2, gt=0)
    """rloo/grpo: PPO clip of the probability ratio when a rollout is reused."""
    reuse: int = Field(1, ge=1)
    """Optimizer steps taken on each batch of rollouts (the ratio to the sampling policy is clipped)."""
    replay: int = Field(0, ge=0)
    """tb/subtb: of a prompt's K samples, this many are replaced by its best earlier ones (a buffer of the best
    unique sequences: off-policy exploration, valid for GFlowNet losses; saved with each checkpoint)."""
    replay_size: int = Field(16, ge=1)
    """tb/subtb: sequences the replay buffer keeps per prompt."""
    log_z: Literal["vargrad", "learned"] = "vargrad"
    """tb: each prompt's log Z estimated from its K samples (vargrad), or learned by a small head on the prompt's
    last hidden state, trained with the policy at rl.log_z_lr and saved with the checkpoints and the model."""
    log_z_lr: float = Field(0.1, gt=0)
    """tb with log_z: learned: the head's learning rate (GFlowNet code gives log Z a rate far above the policy's);
    it follows train.lr_scheduler's shape."""
    reward_scale: float = Field(1.0, gt=0)
    """tb/subtb: beta in log R = log p_ref / T + beta * reward."""
    ref_temperature: float = Field(1.0, gt=0)
    """tb/subtb: T at the first step; the reference's log-likelihood is divided by it."""
    ref_temperature_end: Optional[float] = Field(None, gt=0)
    """tb/subtb: T at the last step, annealed linearly (none: constant)."""
    subtb_lambda: float = Field(1.0, gt=0)
    """subtb: weight lambda ** (length - 1) of a sub-trajectory."""
    dpo_beta: float = Field(0.1, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    """dpo: conservative DPO's assumed share of flipped preferences."""

    @model_validator(mode="after")
    def _for_the_algorithm(self) -> RLConfig:
        if self.replay and self.algorithm not in ("tb", "subtb"):
            raise ValueError("rl.replay is for the off-policy GFlowNet losses (tb, subtb)")
        if self.log_z == "learned" and self.algorithm != "tb":
            raise ValueError("rl.log_z: learned is for rl.algorithm=tb (the others have no log Z)")
        if self.replay >= self.num_generations:
            raise ValueError("rl.replay must be below rl.num_generations (some samples must be fresh)")
        return self

    @field_validator("rewards", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        if isinstance(v, (str, dict)):
            v = [v]
        if v is not None and not isinstance(v, (list, tuple)):
            return v  # pydantic names the type error
        return [{"name": x} if isinstance(x, str) else x for x in (v or [])]
