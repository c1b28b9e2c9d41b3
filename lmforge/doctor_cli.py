"""``lmforge doctor MODEL [--data FILE] [--config FILE]``: load what is named, run the checks, report.

The checks themselves live in ``lmforge.doctor``; this module reads files and configs and prints.
"""

from __future__ import annotations

import json
from pathlib import Path

from .doctor import GENERATION_KEYS, SEVERITIES, Finding, check
from .errors import LmforgeError

# ---- inputs: data files and configs --------------------------------------------------------------------

def load_rows(path: str | Path) -> tuple[list[dict], list[str]]:
    """Rows of a data file or folder (any format the data readers take), with the ``file:line`` of each."""
    from .data.readers import read_records

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
    from .config import load_config

    cfg = load_config(p)
    t = cfg.sample.temperature  # lmforge samples when temperature > 0, greedy at 0
    gen = {"max_new_tokens": cfg.sample.max_new_tokens, "temperature": t, "do_sample": t > 0,
           "top_k": cfg.sample.top_k, "top_p": cfg.sample.top_p}
    out = {"generation": gen, "data_format": cfg.data.format, "max_positions": cfg.model.context,
           "append_eos": getattr(cfg.data, "append_eos", True), "prompts": [x for x in cfg.sample.prompts if x]}
    local = [src.path for src in cfg.data.train if Path(src.path).exists()]  # hub datasets are not fetched here
    if local:
        out["rows"], out["where"] = load_rows(local[0])
    return out


def model_generation(model) -> dict:
    """The model's own generation_config.json, only the keys set there and that the checks read."""
    gc = getattr(model, "generation_config", None)
    return {k: v for k, v in gc.to_diff_dict().items() if k in GENERATION_KEYS} if gc is not None else {}


# ---- the command -------------------------------------------------------------------------------------

def add_arguments(parser) -> None:
    parser.add_argument("model", help="model folder, lmforge run folder (uses best/ or model/) or hub id")
    parser.add_argument("--data", help="a JSON/JSONL dataset: Alpaca, chat messages, prompt/completion or text rows")
    parser.add_argument("--config", help="an lmforge YAML config, or a generation config JSON (GenerationConfig keys)")
    parser.add_argument("--prompt", action="append", default=[], help="a prompt to check (repeatable)")
    parser.add_argument("--no-append-eos", action="store_true",
                        help="the training pipeline does not append EOS to completions")
    parser.add_argument("--purpose", choices=["doctor", "train", "generate"], default="doctor",
                        help="how strict the PAD checks are (default: doctor)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON lines")
    parser.add_argument("--trust-remote-code", action="store_true")


def load_model_and_tokenizer(name: str, trust_remote_code: bool = False):
    """The model (None for a tokenizer-only folder) and its tokenizer; a LoRA adapter saved without a
    tokenizer uses its base model's."""
    from .model import load_pretrained, resolve_model_path
    from .tokenizer import load_tokenizer

    p = Path(resolve_model_path(name))
    tok_path = p
    if (p / "adapter_config.json").is_file() and not (p / "tokenizer_config.json").is_file():
        tok_path = json.loads((p / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    tokenizer = load_tokenizer(tok_path, trust_remote_code=trust_remote_code)
    if p.is_dir() and not any((p / f).is_file() for f in ("config.json", "adapter_config.json")):
        return None, tokenizer
    return load_pretrained(p, trust_remote_code=trust_remote_code), tokenizer


def run(args) -> int:
    model, tokenizer = load_model_and_tokenizer(args.model, args.trust_remote_code)
    kw: dict = {"generation": model_generation(model) if model is not None else {}}
    if args.config:
        settings = settings_from_config(args.config)
        kw["generation"] = {**kw["generation"], **settings.pop("generation")}
        kw.update(settings)
    if args.data:
        kw["rows"], kw["where"] = load_rows(args.data)
    if args.prompt:
        kw["prompts"] = args.prompt
    if args.no_append_eos:
        kw["append_eos"] = False
    findings = check(model=model, tokenizer=tokenizer, purpose=args.purpose, **kw)
    if model is None:
        findings.append(Finding("model", "info", f"{args.model} holds no model: checked the tokenizer only",
                                "point doctor at a folder with config.json to check the model too"))
    _report(findings, args.json)
    return 1 if any(f.severity == "error" for f in findings) else 0


def _report(findings: list[Finding], as_json: bool) -> None:
    if as_json:
        for f in findings:
            print(json.dumps(f.__dict__))
        return
    for f in findings:
        print(f"{f.severity:<8} {f.check:<15} {f.message}\n{'':<24} fix: {f.fix}")
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    print(", ".join(f"{n} {s}{'s' if n != 1 and s != 'info' else ''}" for s, n in counts.items())
          if findings else "no problems found")
