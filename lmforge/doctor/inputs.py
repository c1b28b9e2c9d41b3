"""What the doctor is pointed at: a model (through the one loader), data files, an lmforge config or a
generation config; ``diagnose`` loads them and runs every check (``lmforge doctor`` prints the result)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from lmforge.core.config import load_config
from lmforge.core.errors import LmforgeError
from lmforge.data.readers import read_records
from lmforge.doctor.checks import GENERATION_KEYS, Finding, check
from lmforge.model import load_model_and_tokenizer

# ---- inputs: data files and configs --------------------------------------------------------------------


def load_rows(path: str | Path) -> tuple[list[dict], list[str]]:
    """Rows of a data file or folder (any format the data readers take), with the ``file:line`` of each."""
    records = read_records(path)
    return [r.row for r in records], [r.where for r in records]


def settings_from_config(path: str | Path) -> dict:
    """``check`` keyword arguments from an lmforge YAML config or a generation config JSON."""
    p = Path(path)
    if p.suffix == ".json":
        if not p.is_file():
            raise LmforgeError(f"config file not found: {p}")
        try:
            gen = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise LmforgeError(f"{p}:{e.lineno}: not valid JSON: {e.msg}") from None
        if not isinstance(gen, dict):
            raise LmforgeError(f"{p}: a generation config is a JSON object of GenerationConfig keys")
        return {"generation": gen}
    cfg = load_config(p)
    t = cfg.sample.temperature  # lmforge samples when temperature > 0, greedy at 0
    gen = {
        "max_new_tokens": cfg.sample.max_new_tokens,
        "temperature": t,
        "do_sample": t > 0,
        "top_k": cfg.sample.top_k,
        "top_p": cfg.sample.top_p,
    }
    out = {
        "generation": gen,
        "data_format": cfg.data.format,
        "max_positions": cfg.model.context,
        "prompts": [x for x in cfg.sample.prompts if x],
    }
    local = [src.path for src in cfg.data.train if Path(src.path).exists()]  # hub datasets are not fetched here
    if local:
        out["rows"], out["where"] = load_rows(local[0])
    return out


def model_generation(model) -> dict:
    """The model's own generation_config.json, only the keys set there and that the checks read."""
    gc = getattr(model, "generation_config", None)
    return {k: v for k, v in gc.to_diff_dict().items() if k in GENERATION_KEYS} if gc is not None else {}


def diagnose(
    name: str,
    *,
    config: Optional[str] = None,
    data: Optional[str] = None,
    prompts: Sequence[str] = (),
    append_eos: bool = True,
    purpose: str = "doctor",
    trust_remote_code: bool = False,
    device: str = "auto",
) -> list[Finding]:
    """Loads the model (or a tokenizer-only folder) and whatever else is named; every check's findings."""
    model, tokenizer = load_model_and_tokenizer(
        name, trust_remote_code=trust_remote_code, tokenizer_only_ok=True, device=device
    )
    kw: dict = {"generation": model_generation(model) if model is not None else {}}
    if config:
        settings = settings_from_config(config)
        kw["generation"] = {**kw["generation"], **settings.pop("generation")}
        kw.update(settings)
    if data:
        kw["rows"], kw["where"] = load_rows(data)
    if prompts:
        kw["prompts"] = list(prompts)
    if not append_eos:
        kw["append_eos"] = False
    findings = check(model=model, tokenizer=tokenizer, purpose=purpose, **kw)
    if model is None:
        findings.append(
            Finding(
                "model",
                "info",
                f"{name} holds no model: checked the tokenizer only",
                "point doctor at a folder with config.json to check the model too",
            )
        )
    return findings
