"""The litellm plugin: registered and listed without importing litellm."""

from __future__ import annotations

import subprocess
import sys


def test_plugin_import_does_not_import_litellm():
    code = (
        "import sys, ste_backends.litellm.plugin, ste_backends.litellm; "
        "assert 'litellm' not in sys.modules, 'litellm imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_listing_backends_does_not_import_litellm():
    code = (
        "import sys, warnings; warnings.simplefilter('ignore')\n"
        "from ste_core.plugins import list_backends\n"
        "names = [b.name for b in list_backends()]\n"
        "assert 'litellm' in names and 'openai' in names, names\n"
        "assert 'litellm' not in sys.modules, 'litellm imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
