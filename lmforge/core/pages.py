"""HTML pages from Jinja2 templates shipped inside a package, with autoescape: data is escaped by Jinja,
never by hand (the inspect report, the data preview)."""

from __future__ import annotations

import functools

from jinja2 import Environment, PackageLoader, StrictUndefined


@functools.cache
def environment(package: str) -> Environment:
    """The templates of ``package``'s ``templates/`` folder; a missing variable is an error, not blank."""
    return Environment(
        loader=PackageLoader(package, "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
