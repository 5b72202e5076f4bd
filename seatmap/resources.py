"""The files seatmap ships besides its Python: the web UI, the SQL migrations, the Lua scripts.

One module finds them all, so the routes (app.py, ops.py) and the migration runner (db.py) do not
import each other for a path. `web/` and `sql/` sit beside the package in a checkout and are
copied into it (`seatmap/_web`, `seatmap/_sql`) when a wheel is built (pyproject.toml); Lua files
sit beside the Python that calls them and are read with `importlib.resources`, so they are found
in a zip or a wheel as well as in a checkout.
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def _packaged_or_checkout(packaged: str, checkout: str) -> Path:
    inside = Path(str(importlib.resources.files("seatmap"))) / packaged
    return inside if inside.is_dir() else _CHECKOUT / checkout


def web_dir() -> Path:
    """`web/` in a checkout, `seatmap/_web` inside an installed wheel."""
    return _packaged_or_checkout("_web", "web")


def sql_dir() -> Path:
    """`sql/` (the numbered migrations) in a checkout, `seatmap/_sql` inside an installed wheel."""
    return _packaged_or_checkout("_sql", "sql")


@functools.cache
def lua(package: str, name: str) -> str:
    """The text of the Lua script `name` beside the modules of `package` (read once per process)."""
    return importlib.resources.files(package).joinpath(name).read_text()
