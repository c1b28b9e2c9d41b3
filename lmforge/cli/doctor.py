"""``lmforge doctor MODEL [--data FILE] [--config FILE]``: the known pitfalls, one finding a line."""

from __future__ import annotations

import json

from lmforge.doctor import SEVERITIES, Finding
from lmforge.doctor.inputs import diagnose


def add_arguments(parser) -> None:
    parser.add_argument("model", help="model folder, lmforge run folder (uses best/ or model/) or hub id")
    parser.add_argument("--data", help="a JSON/JSONL dataset: Alpaca, chat messages, prompt/completion or text rows")
    parser.add_argument("--config", help="an lmforge YAML config, or a generation config JSON (GenerationConfig keys)")
    parser.add_argument("--prompt", action="append", default=[], help="a prompt to check (repeatable)")
    parser.add_argument(
        "--no-append-eos", action="store_true", help="the training pipeline does not append EOS to completions"
    )
    parser.add_argument(
        "--purpose",
        choices=["doctor", "train", "generate"],
        default="doctor",
        help="how strict the PAD checks are (default: doctor)",
    )
    parser.add_argument("--json", action="store_true", help="print the findings as JSON lines")
    parser.add_argument("--device", default="auto", help="auto (CUDA where present), cpu, cuda, cuda:1, mps")
    parser.add_argument("--trust-remote-code", action="store_true")


def run(args) -> int:
    findings = diagnose(
        args.model,
        config=args.config,
        data=args.data,
        prompts=args.prompt,
        append_eos=not args.no_append_eos,
        purpose=args.purpose,
        trust_remote_code=args.trust_remote_code,
        device=args.device,
    )
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
    print(
        ", ".join(f"{n} {s}{'s' if n != 1 and s != 'info' else ''}" for s, n in counts.items())
        if findings
        else "no problems found"
    )
