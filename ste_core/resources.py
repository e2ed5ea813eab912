"""Where a backend records the paid resources it creates: dedicated endpoints, batch jobs.

A request is recorded by the core (the scheduler reserves it in the run's ledger before sending
it). A resource that outlives a request is created by the backend itself, so the backend records
it, through its `resources` (a `Resources`), in three steps:

    resource = self.resources.begin("endpoint", key=model, detail={"name": name},
                                    usd_per_hour=price)   # committed before the create call
    created = await client.endpoints.create(...)
    resource = self.resources.update(resource, provider_id=created.id)  # first thing after
    ...
    self.resources.end(resource)                          # deleted: its cost is final

A run killed anywhere in between leaves the entry open in the ledger, and the next session finds
it with `open()`: a batch job is re-attached to (polled, its results collected; never submitted
again while it may still finish), an endpoint still serving the model needed is reused, and one
that is not is torn down (`FineTuneBackend.reap` / `InferenceBackend.reap`), with a warning
naming it and its accrued cost. `ste cleanup RUN_DIR` lists and tears down whatever is still open.

Outside a run (a backend used as a library) `resources` is an in-memory `Resources`: the same
calls work, nothing is persisted. Inside a run it is a `LedgerResources` over the run store,
which also charges the budget: `begin` refuses (BudgetExceeded) when the run is already over
`max_cost_usd`, and an hourly price accrues into the budget until `end`.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

from ste_core.records import Resource, ResourceState

if TYPE_CHECKING:
    from ste_core.engine.budget import Budget
    from ste_core.engine.store import RunStore

__all__ = ["LedgerResources", "Resources"]


class Resources:
    """The resources one backend created, in memory (the base: a backend used alone).

    `backend` names the backend, `section` the config section whose backend it is ("generator",
    "judge", "finetune"); `notify` shows a line to the person running ste (the run's console);
    by default it does nothing (backends also log at INFO).
    """

    def __init__(
        self,
        backend: str = "",
        section: str = "",
        *,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.backend, self.section = backend, section
        self._notify = notify
        self._items: dict[int, Resource] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        # Entries this session works on: begun here, or claimed from a session that died.
        self._claimed: set[int] = set()
        self._teardowns: set[asyncio.Task[Any]] = set()

    @property
    def cost_limited(self) -> bool:
        """Whether a cost limit (`budget.max_cost_usd`) counts what is begun here: a resource
        of unknown price would escape it, so a backend refuses to create one."""
        return False

    def notify(self, message: str) -> None:
        """Tell the user something they pay for happened (an endpoint created, ready, deleted)."""
        if self._notify is not None:
            self._notify(message)

    def begin(
        self,
        kind: str,
        *,
        key: str = "",
        detail: Mapping[str, Any] | None = None,
        usd_per_hour: float | None = None,
        estimate_usd: float = 0.0,
    ) -> Resource:
        """Record a resource about to be created; call it *before* the create call."""
        with self._lock:
            resource = Resource(
                entry=next(self._ids),
                kind=kind,
                backend=self.backend,
                section=self.section,
                key=key,
                detail=dict(detail or {}),
                usd_per_hour=usd_per_hour,
                created=time.time(),
            )
            self._items[resource.entry] = resource
            self._claimed.add(resource.entry)
        return resource

    def update(
        self,
        resource: Resource,
        *,
        provider_id: str | None = None,
        state: ResourceState | None = None,
        detail: Mapping[str, Any] | None = None,
        usd_per_hour: float | None = None,
    ) -> Resource:
        """Record its provider id (right after the create call returns), that it is `live`
        (ready, running), new details or its hourly price."""
        with self._lock:
            current = self._items.get(resource.entry, resource)
            now = time.time()
            changes: dict[str, Any] = {"detail": {**current.detail, **(detail or {})}}
            if provider_id is not None:
                changes["provider_id"] = provider_id
            if usd_per_hour is not None:
                changes["usd_per_hour"] = usd_per_hour
            if state is not None:
                changes["state"] = state
                if state == "live" and current.ready is None:
                    changes["ready"] = now
                if state == "ended" and current.ended is None:
                    changes["ended"] = now
            updated = current.model_copy(update=changes)
            self._items[resource.entry] = updated
        return updated

    def end(self, resource: Resource, *, cost_usd: float | None = None) -> Resource:
        """It no longer exists at the provider (or no longer bills): its final cost is
        `cost_usd`, else what its hourly price accrued."""
        current = self._items.get(resource.entry, resource)
        ended = self.update(current, state="ended")
        cost = cost_usd if cost_usd is not None else (ended.accrued_usd() or 0.0)
        with self._lock:
            final = ended.model_copy(update={"cost_usd": cost})
            self._items[resource.entry] = final
        return final

    def open(self, kind: str | None = None) -> list[Resource]:
        """This backend's resources not known to be ended (also those of a session that died),
        oldest first."""
        with self._lock:
            return [r for r in self._items.values() if r.open and (kind is None or r.kind == kind)]

    def all(self) -> list[Resource]:
        """Every resource this backend recorded, oldest first."""
        with self._lock:
            return list(self._items.values())

    def claim(self, kind: str, key: str) -> Resource | None:
        """An open resource of `kind` with `key` that no one in this session works on (one a
        dead session left, to re-attach to), now claimed by the caller; None when there is none.
        Two identical batches of one session never share an entry."""
        for resource in self.open(kind):
            with self._lock:
                if resource.key == key and resource.entry not in self._claimed:
                    self._claimed.add(resource.entry)
                    return resource
        return None

    def release(self, resource: Resource) -> None:
        """Stop working on `resource` (its create call failed) while it stays open: a retry in
        this session may `claim` it again, and find what it left (an uploaded file)."""
        with self._lock:
            self._claimed.discard(resource.entry)

    def tear_down_later(self, teardown: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `teardown` (cancel a batch, delete an endpoint) in a task of its own that the
        cancellation of its caller does not reach; the backend's `aclose` waits for it
        (`settle`), so closing the backend's client cannot cut the call short."""
        task = asyncio.ensure_future(teardown)
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)
        return task

    async def settle(self, timeout_s: float = 10.0) -> None:
        """Wait (at most `timeout_s`) for the teardowns started with `tear_down_later`."""
        pending = [t for t in self._teardowns if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)


class LedgerResources(Resources):
    """`Resources` in the run's ledger (the run store), charged to the run's budget."""

    def __init__(
        self,
        store: RunStore,
        budget: Budget | None,
        backend: str,
        section: str = "",
        *,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(backend, section, notify=notify)
        self.store, self.budget = store, budget

    @property
    def cost_limited(self) -> bool:
        return self.budget is not None and self.budget.max_cost_usd is not None

    def begin(
        self,
        kind: str,
        *,
        key: str = "",
        detail: Mapping[str, Any] | None = None,
        usd_per_hour: float | None = None,
        estimate_usd: float = 0.0,
    ) -> Resource:
        if self.budget is not None:
            self.budget.hold(estimate_usd)
        resource = self.store.resource_begin(
            kind,
            backend=self.backend,
            section=self.section,
            key=key,
            detail=detail,
            usd_per_hour=usd_per_hour,
            estimate_usd=estimate_usd,
        )
        with self._lock:
            self._claimed.add(resource.entry)
        self._accrue(resource)
        return resource

    def update(
        self,
        resource: Resource,
        *,
        provider_id: str | None = None,
        state: ResourceState | None = None,
        detail: Mapping[str, Any] | None = None,
        usd_per_hour: float | None = None,
    ) -> Resource:
        updated = self.store.resource_update(
            resource.entry,
            provider_id=provider_id,
            state=state,
            detail=detail,
            usd_per_hour=usd_per_hour,
        )
        if usd_per_hour is not None:
            self._accrue(updated)
        return updated

    def end(self, resource: Resource, *, cost_usd: float | None = None) -> Resource:
        current = self.store.resource(resource.entry)
        if not current.open:
            return current
        # One clock reading for both: the cost is priced up to the end time it is stored with.
        now = time.time()
        cost = cost_usd if cost_usd is not None else (current.accrued_usd(now) or 0.0)
        ended = self.store.resource_update(resource.entry, state="ended", cost_usd=cost, now=now)
        if self.budget is not None:
            # Its estimate is counted until now; the final cost replaces it.
            self.budget.stop_accruing(resource.entry, cost - current.estimate_usd)
        return ended

    def open(self, kind: str | None = None) -> list[Resource]:
        return self.store.resources(kind=kind, backend=self.backend, open_only=True)

    def all(self) -> list[Resource]:
        return self.store.resources(backend=self.backend)

    def _accrue(self, resource: Resource) -> None:
        if self.budget is not None and resource.usd_per_hour:
            self.budget.accrue(resource.entry, resource.usd_per_hour, resource.created)
