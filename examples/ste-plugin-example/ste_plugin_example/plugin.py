"""The plugin module named by the `ste` entry point. Keep it light: it is imported whenever ste
loads plugins (e.g. for `ste backends`), so any heavy SDK belongs inside the backend's methods."""

from __future__ import annotations

from ste_core import RegisterBackends, hookimpl


@hookimpl
def register_backends(register: RegisterBackends) -> None:
    from ste_plugin_example.backend import RuleJudgeInference

    register("example-rules", inference=RuleJudgeInference)
