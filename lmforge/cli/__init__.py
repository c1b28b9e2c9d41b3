"""The command line: one module per command in this package, each the same shape.

A command module has ``add_arguments(parser)`` and ``run(args) -> int``: it parses, calls one stage
function, prints; its one-line help is its entry in ``COMMANDS``. Only the chosen command's module is
imported, so ``lmforge --help`` answers at once. A user mistake (``LmforgeError``) prints one line and
exits 2; no traceback.
To add a command: copy ``validate.py`` to ``NAME.py`` and add NAME and its help to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from lmforge.core.errors import LmforgeError

# The commands, in the order ``lmforge --help`` lists them, with their one-line help; each is the module
# lmforge.cli.<name>. The help lives here so that ``lmforge --help`` answers without importing any stage.
COMMANDS = {
    "demo": "train a tokenizer and a small poet on the embedded corpus, print poems",
    "tokenizer": "train a BPE tokenizer (`lmforge tokenizer train`)",
    "pretrain": "pretrain a model from scratch: CONFIG.yaml [key=value ...]",
    "finetune": "fine-tune a pretrained model (full, LoRA, QLoRA): CONFIG.yaml [key=value ...]",
    "rl": "train with rewards or preferences (RLOO, GRPO, GFlowNet TB/SubTB, DPO): CONFIG.yaml [key=value ...]",
    "resume": "continue a run from its last checkpoint",
    "sweep": "search settings with Optuna (trials are runs; resumable, shareable): SWEEP.yaml [--report]",
    "validate": "check a config and print the resolved values",
    "data": "look at the training data as the model will: trained tokens, cuts, padding and packing",
    "generate": "generate text from a model, prompts or a JSONL file",
    "eval": "evaluate models on text and tasks; one comparison table",
    "inspect": "HTML report: surprisal, logit lens, attention, attributions",
    "doctor": "check a model, tokenizer, data and config for known pitfalls",
    "export": "merge a LoRA adapter into its base, or write a GGUF file for llama.cpp (`lmforge export merge|gguf`)",
    "serve": "serve a model over an OpenAI-compatible HTTP API, with a playground page",
    "chat": "talk to a model in the terminal through its chat template (/reset, /temp 0.4, ...)",
}


def command(name: str):
    return importlib.import_module(f"lmforge.cli.{name}")


def dashed_overrides(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``--key value`` and ``--key=value`` (the way other tools take settings) as ``key=value`` overrides, for
    commands that take overrides; the command's own options are left alone."""
    if not any(a.dest == "overrides" for a in parser._actions):
        return argv
    known, out, i = parser._option_string_actions, [], 0
    while i < len(argv):
        tok = argv[i]
        name, eq, value = tok.partition("=")
        if tok.startswith("--") and len(tok) > 2 and name not in known:
            key = name[2:]
            if eq:
                out.append(f"{key}={value}")
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                out.append(f"{key}={argv[i + 1]}")
                i += 1
            else:
                out.append(f"{key}=true")
        else:
            out.append(tok)
        i += 1
    return out


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmforge", description="Forge language models end to end, CPU first.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_ in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return p


def _quiet_libraries() -> None:
    """Our own progress bar and messages only: no per-file loading bars from the libraries."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        args = _top_parser().parse_args(argv)
        if args.version:
            from lmforge import __version__

            print(__version__)
            return 0
        _top_parser().print_help()
        return 0 if not argv else 2
    name = argv[0]
    _quiet_libraries()
    try:
        mod = command(name)
        parser = argparse.ArgumentParser(prog=f"lmforge {name}", description=COMMANDS[name])
        mod.add_arguments(parser)
        if any(a.dest == "overrides" for a in parser._actions):  # options may stand between the overrides
            args = parser.parse_intermixed_args(dashed_overrides(parser, argv[1:]))
        else:
            args = parser.parse_args(argv[1:])
        return int(mod.run(args) or 0)
    except LmforgeError as e:
        print(f"lmforge {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lmforge {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
