"""The run directory: where a run's resolved config, manifest, store and exports live.

```
runs/NAME/
  config.toml          resolved config (defaults filled in; secrets never)
  store.sqlite         the run's state: request cache, stages and their counts and usage,
                       manifest, metrics (ste_core.engine.store.RunStore)
  manifest.json        export: versions, seed, models, fine-tune jobs, endpoints, usage, cost
  summary.md           export: accuracy per iteration with 95% intervals
  eval_pairs.jsonl     the frozen held-out pairs (every judge is scored on these)
  data/                instructions.jsonl, classified.jsonl, filtered.jsonl, train.jsonl, eval.jsonl
  iter_0/              eval.jsonl, metrics.json (export; the seed judge)
  iter_N/              baselines.jsonl pairs.jsonl *_drops.jsonl judgements.jsonl selected.jsonl
                       sft.jsonl dpo.jsonl (GRPO: grpo.jsonl) train.<backend>.<method>.jsonl
                       eval.jsonl metrics.json
  report.md report.html accuracy.png funnel.png cost.png   (ste_core.evaluation.write_report)
```

Files are written atomically (`ste_core.run.io`), so a file that exists is whole; a stage is
marked done in the store only after its files are in place. The exports (`ste_core.run.exports`)
are rewritten from the store and never read back as state.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from ste_core.errors import ConfigurationError

__all__ = ["RunDir", "package_versions"]

#: Files whose presence marks a directory as a ste run directory (safe to delete with --fresh).
_RUN_MARKERS = ("store.sqlite", "manifest.json")


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
    """Paths of one run directory, and its creation and removal."""

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
