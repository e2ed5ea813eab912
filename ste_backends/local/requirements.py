"""Check a backend's optional dependencies before it is used, without importing them.

The plugin host checks `requires` when it constructs a backend by name; the classes check again
in `__init__` so that direct construction (notebooks, tests) gives the same actionable message
instead of an ImportError deep inside a method.
"""

from __future__ import annotations

import importlib.util

from ste_core.errors import MissingDependencyError


def ensure_installed(backend: str, extra: str, requires: tuple[str, ...]) -> None:
    """Raise MissingDependencyError naming the pip extra if any module in `requires` is missing."""
    missing = [name for name in requires if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(backend, extra, missing)
