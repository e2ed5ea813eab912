"""Options of the local backend (ste_backends/local/options.py), validated when it is built."""

from __future__ import annotations

import pytest

from ste_core.errors import ConfigurationError
from tests.backends.local.local_support import backend

pytestmark = [pytest.mark.local_model, pytest.mark.timeout(180)]


def test_options_are_validated() -> None:
    with pytest.raises(ConfigurationError, match=r"temperature \(local option\): unknown key"):
        backend(temperature=0.5)
    with pytest.raises(ConfigurationError, match=r'dtype \(local option\): got "float8"'):
        backend(dtype="float8")
    with pytest.raises(
        ConfigurationError, match=r"batch_size \(local option\): got 0; must be >= 1"
    ):
        backend(batch_size=0)
