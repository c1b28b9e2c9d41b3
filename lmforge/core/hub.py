"""Loading from the Hugging Face hub: the real code path, with a one-line error when offline or missing."""

from __future__ import annotations

import contextlib
from pathlib import Path

from lmforge.core.errors import LmforgeError, first_line


def looks_like_hub_id(name: str) -> bool:
    """``owner/name`` that is not an existing local path."""
    return not Path(name).exists() and name.count("/") == 1 and not name.startswith((".", "/", "~"))


@contextlib.contextmanager
def hub_errors(name: str, what: str):
    """Turns hub/network/file errors while loading ``name`` into one clear line."""
    try:
        yield
    except LmforgeError:
        raise
    except (OSError, ValueError) as e:  # HF raises OSError subclasses for missing/offline repos
        local = Path(name).exists()
        if local:
            first = first_line(e)
            raise LmforgeError(f"cannot load {what} from {name}: {first}") from None
        if looks_like_hub_id(name):
            raise LmforgeError(
                f"cannot load {what} {name!r} from the Hugging Face hub (offline, private or misspelled?); "
                "pass a local folder instead"
            ) from None
        raise LmforgeError(f"{what} not found: {name} (no such folder, and not a hub id owner/name)") from None
