"""In-process test backends for the pipeline: the fake provider's scripted model without HTTP,
and a fine-tune backend whose "training" names a better model (`<base>-ft<i>`).

Registered as a plugin through the real plugin host (`get_host().register_plugin`), exactly as a
third-party plugin would be, under the backend name "scripted".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from ste_core import hookimpl
from ste_core.backends import (
    BackendOptions,
    FineTuneBackend,
    FineTuneCapabilities,
    InferenceBackend,
    InferenceCapabilities,
    option,
)
from ste_core.errors import TransientProviderError
from ste_core.records import (
    ChatRequest,
    Completion,
    FineTuneJobState,
    FineTuneMethod,
    FineTuneSpec,
    JobStatus,
    ModelRef,
    Resource,
    Usage,
)
from ste_core.run.progress import Reporter
from ste_core.testing.fake_provider import ScriptedModel


class ScriptedInferenceOptions(BackendOptions):
    unparsable_rate: float = option(
        0.1, ge=0, le=1, changes_results=True, help="share of answers with no verdict"
    )
    endpoint: str | None = option(
        None, changes_results=True, help="the serving session a fine-tuned model is called through"
    )


class ScriptedInference(InferenceBackend):
    """The fake provider's scripted model, called in-process. Counts calls per model."""

    Options = ScriptedInferenceOptions
    options: ScriptedInferenceOptions
    capabilities: ClassVar[InferenceCapabilities] = InferenceCapabilities(max_n=None)
    calls: ClassVar[list[str]] = []
    fail_every: ClassVar[int | None] = None  # every k-th call raises a transient error
    delay_s: ClassVar[float] = 0.0  # how long each call takes
    #: refuse(request) -> the error a request fails with, or None to answer it
    refuse: ClassVar[Callable[[ChatRequest], BaseException | None] | None] = None

    def __init__(self, options: ScriptedInferenceOptions | None = None, /, **values: Any) -> None:
        super().__init__(options, **values)
        self.model = ScriptedModel(unparsable_rate=self.options.unparsable_rate)

    async def complete(self, request: ChatRequest) -> Completion:
        type(self).calls.append(request.model)
        # "<model>@<session>" is a serving session's temporary name for <model> (an endpoint).
        model_name = request.model.split("@", 1)[0]
        if type(self).delay_s:
            await asyncio.sleep(type(self).delay_s)
        k = type(self).fail_every
        if k and len(type(self).calls) % k == 0:
            raise TransientProviderError("injected", provider="scripted")
        refuse = type(self).refuse
        error = refuse(request) if refuse is not None else None
        if error is not None:
            raise error
        p = request.params
        out = self.model.generate(
            model_name,
            [m.model_dump() for m in request.messages],
            n=p.n,
            temperature=p.temperature,
            seed=p.seed,
            max_tokens=p.max_tokens,
            stop=p.stop,
        )
        chars = sum(len(m.content) for m in request.messages)
        return Completion(
            texts=tuple(t for t, _ in out),
            finish_reasons=tuple(r for _, r in out),
            usage=Usage(
                prompt_tokens=chars // 4, completion_tokens=sum(len(t) for t, _ in out) // 4
            ),
            model=request.model,
        )


class ScriptedFineTuneOptions(BackendOptions):
    polls_to_finish: int = option(2, ge=1, changes_results=False, help="polls until a job succeeds")
    dedicated: bool = option(
        False, changes_results=False, help="serve through billed 'endpoints' in `resources`"
    )


class ScriptedFineTune(FineTuneBackend):
    """Jobs finish after `polls_to_finish` polls; the model is `<base>-ft<iteration>`."""

    Options = ScriptedFineTuneOptions
    options: ScriptedFineTuneOptions
    capabilities: ClassVar[FineTuneCapabilities] = FineTuneCapabilities(
        methods=frozenset({FineTuneMethod.SFT, FineTuneMethod.DPO}),
        continue_from_previous=True,
    )
    jobs: ClassVar[dict[str, dict[str, Any]]] = {}
    submits: ClassVar[int] = 0
    served: ClassVar[list[str]] = []
    torn_down: ClassVar[list[str]] = []
    fail_jobs: ClassVar[bool] = False
    #: the "provider's" live dedicated endpoints: id -> model (with `dedicated`)
    endpoints: ClassVar[dict[str, str]] = {}
    created: ClassVar[list[str]] = []
    reused: ClassVar[list[str]] = []
    usd_per_hour: ClassVar[float] = 3.6

    def write_training_file(
        self, examples: Iterable[Any], method: FineTuneMethod, path: Path
    ) -> int:
        n = 0
        with path.open("w", encoding="utf-8") as fh:
            for ex in examples:
                fh.write(json.dumps({"method": method.value, **ex.model_dump(mode="json")}) + "\n")
                n += 1
        return n

    async def estimate_cost(self, spec: FineTuneSpec, training_file: Path) -> float | None:
        return 0.5

    async def submit(self, spec: FineTuneSpec, training_file: Path) -> FineTuneJobState:
        type(self).submits += 1
        job_id = f"job-{len(self.jobs) + 1}"
        iteration = int((spec.suffix or "it1").rsplit("it", 1)[-1])
        base = spec.from_model or spec.base_model
        self.jobs[job_id] = {
            "polls": 0,
            "model": f"{base}-ft{iteration}",
            "suffix": spec.suffix,
            "created_at": datetime.now(UTC),
        }
        return FineTuneJobState(job_id=job_id, status=JobStatus.QUEUED)

    async def find_job(self, spec: FineTuneSpec, *, created_after: datetime) -> str | None:
        found = [
            job_id
            for job_id, job in self.jobs.items()
            if job.get("suffix") == spec.suffix
            and job.get("created_at", created_after) >= created_after
            and not job.get("cancelled")
        ]
        return found[-1] if found else None

    async def poll(self, job_id: str) -> FineTuneJobState:
        job = self.jobs[job_id]
        job["polls"] += 1
        if job.get("cancelled"):
            return FineTuneJobState(job_id=job_id, status=JobStatus.CANCELLED, message="cancelled")
        if type(self).fail_jobs:
            return FineTuneJobState(
                job_id=job_id, status=JobStatus.FAILED, message="out of GPUs (injected)"
            )
        if job["polls"] < self.options.polls_to_finish:
            return FineTuneJobState(job_id=job_id, status=JobStatus.RUNNING, progress=0.5)
        return FineTuneJobState(
            job_id=job_id,
            status=JobStatus.SUCCEEDED,
            progress=1.0,
            model=ModelRef(model=job["model"], options={"endpoint": f"ep-{job['model']}"}),
            cost_usd=0.25,
        )

    async def cancel(self, job_id: str) -> FineTuneJobState:
        self.jobs[job_id]["cancelled"] = True
        return FineTuneJobState(job_id=job_id, status=JobStatus.CANCELLED)

    def serve(self, model: ModelRef) -> contextlib.AbstractAsyncContextManager[ModelRef]:
        @contextlib.asynccontextmanager
        async def cm() -> AsyncIterator[ModelRef]:
            type(self).served.append(model.model)
            session = len(type(self).served)
            endpoint = await self._endpoint(model) if self.options.dedicated else None
            try:
                # Like a dedicated endpoint: a different name in every serving session.
                yield model.model_copy(update={"model": f"{model.model}@{session}"})
            finally:
                type(self).torn_down.append(model.model)
                if endpoint is not None:
                    await self.reap(endpoint)

        return cm()

    async def _endpoint(self, model: ModelRef) -> Resource:
        """Reuse a live endpoint a dead session left for `model`, or create one."""
        for left in self.resources.open("endpoint"):
            if left.key == model.model and left.provider_id in self.endpoints:
                type(self).reused.append(left.provider_id or "")
                return left
        resource = self.resources.begin("endpoint", key=model.model, usd_per_hour=self.usd_per_hour)
        endpoint_id = f"ep-{len(self.created) + 1}"
        type(self).created.append(endpoint_id)
        self.endpoints[endpoint_id] = model.model
        return self.resources.update(resource, provider_id=endpoint_id, state="live")

    async def resource_state(self, resource: Resource) -> str | None:
        if resource.kind != "endpoint":
            return await super().resource_state(resource)
        return "READY" if resource.provider_id in self.endpoints else None

    async def reap(self, resource: Resource) -> str:
        if resource.kind != "endpoint":
            return await super().reap(resource)
        self.endpoints.pop(resource.provider_id or "", None)
        self.resources.end(resource)
        return "deleted"


class _Plugin:
    @hookimpl
    def register_backends(self, register: Any) -> None:
        register("scripted", inference=ScriptedInference, finetune=ScriptedFineTune)


WORDS = [
    "copper",
    "river",
    "logic",
    "prime",
    "garden",
    "violin",
    "orbit",
    "maple",
    "quartz",
    "ember",
    "sonnet",
    "harbor",
    "lattice",
    "falcon",
    "cipher",
    "meadow",
    "tundra",
    "beacon",
    "marble",
    "saffron",
]


def make_instructions(n: int, *, seed: int = 0) -> list[str]:
    """n distinct, varied instructions."""
    out = []
    for i in range(n):
        a, b, c = (WORDS[(i * k + seed) % len(WORDS)] for k in (1, 3, 7))
        out.append(f"Explain how {a} relates to {b} and give an example with {c} (case {i}).")
    return out


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def base_config(tmp: Path, *, n: int = 40, name: str = "t") -> dict[str, Any]:
    """A small run on the scripted backends, as a dict (tests change keys, then write it)."""
    tmp.mkdir(parents=True, exist_ok=True)
    write_jsonl(tmp / "instructions.jsonl", ({"instruction": t} for t in make_instructions(n)))
    return {
        "run": {"name": name, "output_dir": str(tmp / "runs"), "iterations": 2, "seed": 3},
        "data": {"path": "instructions.jsonl"},
        "generator": {"backend": "scripted", "model": "gen-acc90"},
        "judge": {"backend": "scripted", "model": "judge-acc70", "samples_per_order": 3},
        "finetune": {
            "backend": "scripted",
            "poll_interval_s": 0.001,
            "options": {"polls_to_finish": 2},
        },
        "evaluation": {"eval_size": 10},
    }


def write_config(tmp: Path, data: dict[str, Any], filename: str = "config.toml") -> Path:
    from ste_core.config import dumps_toml

    path = tmp / filename
    path.write_text(dumps_toml(data), encoding="utf-8")
    return path


def config_with(tmp: Path, **changes: Any) -> Any:
    """`base_config(tmp)` with dotted keys changed (`**{"run.iterations": 1}`), loaded."""
    from ste_core.config import load_config

    data = base_config(tmp)
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return load_config(write_config(tmp, data))


class CrashAfter(Reporter):
    """Raises (like a kill) after `n` finished requests of `stage`."""

    def __init__(self, stage: str, n: int) -> None:
        super().__init__()
        self.stage, self.n, self.current, self.done = stage, n, "", 0

    def stage_started(self, iteration: int, stage: str, total: int | None = None) -> None:
        self.current = f"{stage}@{iteration}"

    def scheduler_event(self, event: Any) -> None:
        if self.current == self.stage:
            self.done += 1
            if self.done >= self.n:
                raise RuntimeError("simulated crash")
