"""Reading YAML for configs and task files: any text gives a value or one line naming the file and line.

PyYAML's safe loader raises more than ``YAMLError``: ``ValueError`` for an impossible date
(``2001-02-30``) or an integer past Python's digit limit, ``IndexError`` for an empty ``!!float``,
``RecursionError`` for deep nesting. And it
reads ``2024-01-01`` as a ``datetime.date``, which no lmforge setting takes: here dates stay text.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from lmforge.core.errors import LmforgeError, first_line

TIMESTAMP = "tag:yaml.org,2002:timestamp"


class Loader(yaml.SafeLoader):
    """The safe loader, with dates and times read as the text they are written as."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_yaml(text: str, where: str):
    """The YAML document in ``text``; a one-line ``LmforgeError`` at ``where`` (and its line) otherwise."""
    try:
        return yaml.load(text, Loader=Loader)  # a SafeLoader: no Python objects
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f"{where}:{mark.line + 1}" if mark is not None else where
        raise LmforgeError(f"{at}: not valid YAML: {e.problem or e.context or first_line(e)}") from None
    except yaml.YAMLError as e:
        raise LmforgeError(f"{where}: not valid YAML: {first_line(e)}") from None
    except RecursionError:
        raise LmforgeError(f"{where}: not valid YAML: nested too deeply to read") from None
    except Exception as e:  # PyYAML's constructors: ValueError (2001-02-30, 5000 digits), IndexError (!!float)...
        raise LmforgeError(f"{where}: not valid YAML: a value YAML cannot read ({first_line(e, 80)})") from None


def read_yaml(path: str | Path):
    """The YAML document in the file ``path`` (UTF-8); one line naming the file otherwise."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise LmforgeError(f"{p}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    return parse_yaml(text, str(p))
