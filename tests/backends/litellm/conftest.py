"""Fixtures for the litellm backend tests.

Cassettes are recorded by running real `litellm.acompletion` calls against the local fake
provider (`make_fake`, `replaying`: tests/backends/conftest.py):

    pytest tests/backends/litellm --record-mode=rewrite
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def litellm_module():  # type: ignore[no-untyped-def]
    """litellm, imported once per session (it takes seconds), offline-safe and quiet."""
    from ste_backends.litellm.loader import load_litellm

    return load_litellm()
