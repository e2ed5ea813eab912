"""A paid resource that outlives a request: a dedicated endpoint, a batch job.

The run's ledger holds one `Resource` per thing a backend created at a provider, written before
the call that creates it returns (see `ste_core.resources`), so a killed run can find it again:
re-attach to it, reuse it, or tear it down.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from ste_core.records._base import Record

ResourceState = Literal["creating", "live", "ended"]


class Resource(Record):
    """One ledger entry for a provider resource.

    `key` is what its backend matches it by when a run resumes (the model an endpoint serves, a
    digest of a batch's requests); `provider_id` is the provider's id for it (None while the
    create call has not returned). `usd_per_hour` makes it accrue cost from `created` until
    `ended`; `cost_usd` is its final cost once ended.
    """

    entry: int
    kind: str
    backend: str
    #: the config section whose backend created it ("generator", "judge", "finetune")
    section: str = ""
    key: str = ""
    provider_id: str | None = None
    state: ResourceState = "creating"
    detail: dict[str, Any] = Field(default_factory=dict)
    usd_per_hour: float | None = None
    #: what it was expected to cost when created (counted in the budget until it ends)
    estimate_usd: float = 0.0
    #: unix times
    created: float
    ready: float | None = None
    ended: float | None = None
    cost_usd: float | None = None

    @property
    def open(self) -> bool:
        """Not known to be ended: it may still exist (and bill) at the provider."""
        return self.state != "ended"

    def uptime_s(self, now: float | None = None) -> float:
        """Seconds from creation to its end (or to `now` while open)."""
        end = self.ended if self.ended is not None else (now or time.time())
        return max(0.0, end - self.created)

    def accrued_usd(self, now: float | None = None) -> float | None:
        """Its final cost once ended; while open, its hourly price times its uptime so far
        (None without a price)."""
        if self.state == "ended" and self.cost_usd is not None:
            return self.cost_usd
        if self.usd_per_hour is None:
            return None
        return self.usd_per_hour * self.uptime_s(now) / 3600.0

    def label(self) -> str:
        """How a person reads it: `endpoint ste-judge-1a2b3c (id ep-123)`."""
        name = self.detail.get("name") or self.key
        ident = f" (id {self.provider_id})" if self.provider_id and self.provider_id != name else ""
        return f"{self.kind} {name}{ident}"
