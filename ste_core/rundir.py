"""The run directory: where a run's resolved config, manifest, store and exports live.

```
runs/NAME/
  config.toml          resolved config (defaults filled in; secrets never)
  manifest.json        versions, seed, models, fine-tune job ids, stage timings, tokens, cost
  store.sqlite         request cache + stage state (ste_core.store.RunStore)
  summary.md           accuracy per iteration with 95% intervals
  eval_pairs.jsonl     the frozen held-out pairs (every judge is scored on these)
  data/                instructions.jsonl, classified.jsonl, filtered.jsonl, train.jsonl, eval.jsonl
  iter_0/              eval.jsonl metrics.json (the seed judge)
  iter_N/              baselines.jsonl pairs.jsonl drops.jsonl judgements.jsonl selected.jsonl
                       sft.jsonl dpo.jsonl train.<backend>.<method>.jsonl eval.jsonl metrics.json
  report.md report.html accuracy.png   (ste_core.evaluation.write_report, when available)
```

JSONL files are written atomically (`<file>.tmp`, then renamed), so a file that exists is whole;
a stage is marked done in the store only after its files are in place.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from ste_core.errors import ConfigurationError

__all__ = ["JsonlWriter", "Manifest", "RunDir", "package_versions", "read_jsonl", "write_json"]

T = TypeVar("T", bound=BaseModel)

#: Files whose presence marks a directory as a ste run directory (safe to delete with --fresh).
_RUN_MARKERS = ("store.sqlite", "manifest.json")


class JsonlWriter:
    """Writes JSON lines to `<path>.tmp`; `commit()` renames it into place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.tmp.open("w", encoding="utf-8")
        self.count = 0

    def write(self, record: BaseModel | dict[str, Any]) -> None:
        if isinstance(record, BaseModel):
            line = record.model_dump_json()
        else:
            line = json.dumps(record, ensure_ascii=False)
        self._fh.write(line + "\n")
        self.count += 1

    def commit(self) -> int:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.path)
        return self.count

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)


@contextmanager
def jsonl_writer(path: Path) -> Iterator[JsonlWriter]:
    """`with jsonl_writer(p) as w: w.write(rec)`: committed on success, discarded on error."""
    writer = JsonlWriter(path)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.commit()


def read_jsonl(path: Path, model: type[T] | None = None) -> Iterator[Any]:
    """Stream the rows of a JSONL file (validated as `model` when given)."""
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            if model is None:
                yield json.loads(line)
            else:
                yield model.model_validate_json(line)


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (tmp + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8")
    os.replace(tmp, path)


def package_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Installed versions of ste and the packages that shape its results."""
    names = ["self-taught-evaluators", "pydantic", "pluggy", "httpx", *extra]
    out: dict[str, str] = {"python": platform.python_version()}
    for name in dict.fromkeys(names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


class RunDir:
    """Paths of one run directory, plus the resolved config and the manifest."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- paths -------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def store_path(self) -> Path:
        return self.root / "store.sqlite"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.md"

    @property
    def eval_pairs_path(self) -> Path:
        return self.root / "eval_pairs.jsonl"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def data(self, name: str) -> Path:
        return self.data_dir / f"{name}.jsonl"

    def iter_dir(self, iteration: int) -> Path:
        return self.root / f"iter_{iteration}"

    def iter_file(self, iteration: int, name: str) -> Path:
        return self.iter_dir(iteration) / name

    # -- lifecycle -----------------------------------------------------------------------

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def looks_like_run(self) -> bool:
        return any((self.root / m).exists() for m in _RUN_MARKERS)

    def wipe(self) -> None:
        """Delete the run directory (--fresh). Refuses a directory that is not a run."""
        if not self.root.exists():
            return
        if not self.looks_like_run() and any(self.root.iterdir()):
            raise ConfigurationError(
                f"--fresh would delete {self.root}, which is not a ste run directory (no "
                "store.sqlite or manifest.json). Choose another run.name or output_dir."
            )
        shutil.rmtree(self.root)

    def write_config(self, toml_text: str) -> None:
        self.create()
        tmp = self.config_path.with_suffix(".toml.tmp")
        tmp.write_text(toml_text, encoding="utf-8")
        os.replace(tmp, self.config_path)


class Manifest:
    """manifest.json: read once, updated in memory, saved atomically after every change.

    Keys (the evaluation report reads name, seed, versions, models, finetune_jobs, endpoints,
    started/finished, usage, cost_usd, seconds): `name`, `seed`, `status`, `started`,
    `finished`, `config_fingerprint`, `versions` (package -> version), `backends` (role ->
    backend and distribution), `models` (role -> model id: generator, judge_seed, iter_N),
    `finetune_jobs` (list), `endpoints` (list of served models with seconds), `usage` (run
    totals: requests, cache_hits, prompt/completion tokens), `usage_by_stage`, `cost_usd`
    (inference, finetune, total), `seconds` (stage -> seconds of its last run, and total),
    `sessions` (one entry per `ste run` invocation: started, finished, status).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        if path.exists():
            try:
                self.data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                self.data = {}  # rewritten on save; the store holds the state that matters
        d = self.data
        d.setdefault("started", _now())
        d.setdefault("versions", {})
        d.setdefault("backends", {})
        d.setdefault("models", {})
        d.setdefault("finetune_jobs", [])
        d.setdefault("endpoints", [])
        d.setdefault(
            "usage", {"requests": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0}
        )
        d.setdefault("usage_by_stage", {})
        d.setdefault("cost_usd", {"inference": 0.0, "finetune": 0.0, "total": 0.0})
        d.setdefault("seconds", {"total": 0.0})
        d.setdefault("sessions", [])

    def save(self) -> None:
        self.data["updated"] = _now()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.data)

    def add_usage(self, stage: str, delta: dict[str, Any]) -> None:
        """Add a stage's usage delta (requests, cache_hits, tokens, cost_usd) to the totals."""
        by_stage = self.data["usage_by_stage"].setdefault(stage, {})
        for k, v in delta.items():
            by_stage[k] = round(by_stage.get(k, 0) + v, 6)
        usage = self.data["usage"]
        for k in ("requests", "cache_hits", "prompt_tokens", "completion_tokens"):
            usage[k] += int(delta.get(k, 0))
        self.add_cost("inference", float(delta.get("cost_usd", 0.0)))

    def add_cost(self, kind: str, usd: float) -> None:
        cost = self.data["cost_usd"]
        cost[kind] = round(cost.get(kind, 0.0) + usd, 6)
        cost["total"] = round(cost.get("inference", 0.0) + cost.get("finetune", 0.0), 6)

    def record_stage(self, iteration: int, stage: str, seconds: float) -> None:
        secs = self.data["seconds"]
        secs[f"{iteration}/{stage}"] = round(seconds, 3)
        secs["total"] = round(sum(v for k, v in secs.items() if k != "total"), 3)

    def upsert_job(self, job: dict[str, Any]) -> None:
        jobs = self.data["finetune_jobs"]
        for i, old in enumerate(jobs):
            if old.get("job_id") == job.get("job_id"):
                jobs[i] = {**old, **job}
                return
        jobs.append(job)

    @property
    def spent_usd(self) -> float:
        return float(self.data["cost_usd"].get("total", 0.0))

    @property
    def requests(self) -> int:
        return int(self.data["usage"].get("requests", 0))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
