"""The command table. Each command lives in its module as ``add_arguments(parser)`` + ``run(args)``.

Only the chosen command's module is imported, so ``lmforge --help`` answers at once.
User mistakes (``LmforgeError``) print one line and exit 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import LmforgeError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("lmforge.demo", "train a tokenizer and a small poet on the embedded corpus, print poems"),
    "tokenizer": ("lmforge.tokenizer_cli", "train a BPE tokenizer (`lmforge tokenizer train`)"),
    "pretrain": ("lmforge.train.commands:pretrain", "pretrain a model from scratch: CONFIG.yaml [key=value ...]"),
    "finetune": ("lmforge.train.commands:finetune", "fine-tune a pretrained model (full, LoRA, QLoRA)"),
    "resume": ("lmforge.train.commands:resume", "continue a run from its last checkpoint"),
    "validate": ("lmforge.train.commands:validate", "check a config and print the resolved values"),
    "generate": ("lmforge.generate_cli", "generate text from a model, prompts or a JSONL file"),
    "eval": ("lmforge.evaluate.cli", "evaluate models on text and tasks; one comparison table"),
    "inspect": ("lmforge.inspect_cli", "HTML report: surprisal, logit lens, attention, attributions"),
    "doctor": ("lmforge.doctor_cli", "check a model, tokenizer, data and config for known pitfalls"),
    "export": ("lmforge.export", "merge a LoRA adapter into its base (`lmforge export merge`)"),
}


def _load(spec: str):
    """Returns the module (or, for "mod:prefix", a namespace) providing add_arguments/run."""
    mod_name, _, prefix = spec.partition(":")
    mod = importlib.import_module(mod_name)
    if not prefix:
        return mod.add_arguments, mod.run
    return getattr(mod, f"add_{prefix}_arguments"), getattr(mod, f"run_{prefix}")


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lmforge", description="Forge language models end to end, CPU first.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return p


def _quiet_libraries() -> None:
    """Our own progress bar and messages only: no per-file loading bars from the libraries."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        args = _top_parser().parse_args(argv)
        if args.version:
            from . import __version__

            print(__version__)
            return 0
        _top_parser().print_help()
        return 0 if not argv else 2
    name = argv[0]
    _quiet_libraries()
    try:
        add_arguments, run = _load(COMMANDS[name][0])
        parser = argparse.ArgumentParser(prog=f"lmforge {name}", description=COMMANDS[name][1])
        add_arguments(parser)
        args = parser.parse_args(argv[1:])
        return int(run(args) or 0)
    except LmforgeError as e:
        print(f"lmforge {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lmforge {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
