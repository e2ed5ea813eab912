"""`ste cleanup RUN_DIR`: what a run created at a provider that may still be live, torn down.

For a user who abandons a run (or whose machine died): every endpoint and batch job the run's
ledger holds open is looked up at its provider with the backend that created it, listed with
what it has cost so far, and, when asked (`--yes`), torn down through the backend's `reap`.
One the provider no longer has is closed in the ledger. Backends are built from the run's own
resolved config (`RUN_DIR/config.toml`), so the credentials come from the same environment
variables as the run's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ste_core.backends import FineTuneBackend, InferenceBackend
from ste_core.config import Config
from ste_core.engine.store import RunStore
from ste_core.plugins import get_finetune_backend, get_inference_backend
from ste_core.records import Resource
from ste_core.resources import LedgerResources

__all__ = ["Found", "find_open", "make_backend", "tear_down"]


@dataclass(frozen=True)
class Found:
    """An open ledger entry and what its provider says of it."""

    resource: Resource
    #: the provider's state; None when the provider no longer has it
    state: str | None = None
    #: why it could not be looked up (then `state` means nothing)
    error: str | None = None

    @property
    def live(self) -> bool:
        """Still there (or not known to be gone): something to tear down."""
        return self.error is not None or self.state is not None


def make_backend(config: Config, resource: Resource) -> InferenceBackend | FineTuneBackend:
    """A backend able to act on `resource`: the inference backend of the section that created a
    batch job (a served judge's is the fine-tune section's `inference_options`), else (an
    endpoint, a fine-tune job) the fine-tune backend."""
    if resource.kind != "batch":
        return get_finetune_backend(config.finetune.backend, **dict(config.finetune.options))
    if resource.section in ("generator", "judge"):
        section = config.generator if resource.section == "generator" else config.judge
        return get_inference_backend(resource.backend, **dict(section.options))
    return get_inference_backend(resource.backend, **dict(config.finetune.inference_options))


@contextlib.asynccontextmanager
async def _backend(
    config: Config, store: RunStore, resource: Resource
) -> AsyncIterator[InferenceBackend | FineTuneBackend]:
    backend = make_backend(config, resource)
    backend.resources = LedgerResources(store, None, resource.backend, resource.section)
    try:
        yield backend
    finally:
        with contextlib.suppress(Exception):
            await backend.aclose()


async def find_open(config: Config, store: RunStore) -> list[Found]:
    """Every open resource in the ledger, with its provider's state."""
    found = []
    for resource in store.resources(open_only=True):
        try:
            async with _backend(config, store, resource) as backend:
                state = await backend.resource_state(resource)
        except Exception as exc:
            found.append(Found(resource, error=f"{type(exc).__name__}: {exc}"))
        else:
            found.append(Found(resource, state=state))
    return found


async def tear_down(config: Config, store: RunStore, found: list[Found]) -> list[tuple[Found, str]]:
    """Reap what is live, close in the ledger what is gone; (entry, what happened) for each."""
    done = []
    for item in found:
        async with _backend(config, store, item.resource) as backend:
            if not item.live:
                backend.resources.end(item.resource)
                done.append((item, "already gone at the provider; closed in the ledger"))
                continue
            try:
                done.append((item, await backend.reap(item.resource)))
            except Exception as exc:
                done.append((item, f"FAILED: {type(exc).__name__}: {exc}"))
    return done
