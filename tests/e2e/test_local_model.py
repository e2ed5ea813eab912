"""End to end with the `local` backend (transformers + TRL) on a tiny random model.

A random model writes noise, so it cannot write parseable worse responses or verdicts; the loop
therefore takes its training signal from the fake provider's seed judge and fine-tunes, serves and
evaluates the judge locally:

1. generator + seed judge: the fake provider (`openai` backend); fine-tune: `local` (a LoRA on
   the tiny model, `finetune.base_model` = its directory), whose adapter then judges the frozen
   eval pairs through `local` inference.
2. generator and judge `local`: baselines and the seed judge's evaluation on the frozen eval pairs
   reused from run 1 (`evaluation.pairs_path`), run stage by stage with `--stage`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ste_core.config import dumps_toml
from ste_core.testing.fake_provider import FakeProvider

pytestmark = [pytest.mark.e2e, pytest.mark.local_model, pytest.mark.timeout(300)]

STE = [str(Path(sys.executable).with_name("ste"))]


def _ste(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("STE_")}
    return subprocess.run(
        [*STE, "run", str(config), "--log-json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        cwd=config.parent,
    )


def _write(path: Path, cfg: dict) -> Path:
    path.write_text(dumps_toml(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("trl")
    from ste_backends.local.testing import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("model") / "tiny")


def test_local_finetune_serve_and_evaluate_then_local_generation(
    tmp_path: Path, tiny: Path
) -> None:
    lines = "".join(
        json.dumps({"instruction": f"Give one tip about topic {i} in a sentence."}) + "\n"
        for i in range(12)
    )
    (tmp_path / "instructions.jsonl").write_text(lines, encoding="utf-8")
    short = {"temperature": 0.0, "max_tokens": 8}
    with FakeProvider() as oa:
        cfg = {
            "run": {"name": "local", "output_dir": str(tmp_path / "runs"), "iterations": 1},
            "data": {"path": "instructions.jsonl"},
            "generator": {
                "backend": "openai",
                "model": "fake-acc90",
                "options": {"base_url": oa.url + "/v1"},
            },
            "judge": {
                "backend": "openai",
                "model": "fake-acc80",
                "template": "judge_short",
                "samples_per_order": 2,
                "options": {"base_url": oa.url + "/v1"},
            },
            "finetune": {
                "backend": "local",
                "base_model": str(tiny),
                "poll_interval_s": 0.2,
                "max_length": 2048,
                "batch_size": 2,
                "options": {"max_steps": 2, "device": "cpu"},
            },
            "evaluation": {"eval_size": 3, "params": short},
        }
        proc = _ste(_write(tmp_path / "one.toml", cfg))
        assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "local"
    m1 = json.loads((run / "iter_1" / "metrics.json").read_text())
    adapter = Path(m1["judge_model"])
    assert adapter.is_dir()  # the LoRA adapter the local backend trained
    assert (
        m1["eval"]["n_items"]
        == json.loads((run / "iter_0" / "metrics.json").read_text())["eval"]["n_items"]
    )
    assert m1["eval"]["n_judgements"] == 2 * m1["eval"]["n_items"]  # judged locally, both orders
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["finetune_jobs"][0]["status"] == "succeeded"
    assert manifest["endpoints"][0]["model"] == str(adapter)

    cfg2 = {
        "run": {"name": "local2", "output_dir": str(tmp_path / "runs"), "iterations": 1},
        "data": {"path": "instructions.jsonl", "train_size": 2},
        "generator": {
            "backend": "local",
            "model": str(tiny),
            "params": short,
            "options": {"device": "cpu"},
        },
        "judge": {
            "backend": "local",
            "model": str(tiny),
            "template": "judge_short",
            "samples_per_order": 1,
            "params": short,
            "options": {"device": "cpu"},
        },
        "finetune": {"backend": "local"},
        "evaluation": {"pairs_path": str(run / "eval_pairs.jsonl"), "params": short},
    }
    stages = ["load", "split", "eval_pairs", "baseline@1", "evaluate@0"]
    args = [a for s in stages for a in ("--stage", s)]
    proc = _ste(_write(tmp_path / "two.toml", cfg2), *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run2 = tmp_path / "runs" / "local2"
    baselines = (run2 / "iter_1" / "baselines.jsonl").read_text().splitlines()
    drops = (run2 / "iter_1" / "baseline_drops.jsonl").read_text().splitlines()
    assert len(baselines) + len(drops) == 2
    pairs = (run2 / "eval_pairs.jsonl").read_text().splitlines()
    judged = (run2 / "iter_0" / "eval.jsonl").read_text().splitlines()
    assert len(judged) == 2 * len(pairs)
    assert json.loads((run2 / "iter_0" / "metrics.json").read_text())["judge_model"] == str(tiny)


def test_ste_run_entirely_on_the_local_backend(tmp_path: Path, taught_model_dir: Path) -> None:
    taught = taught_model_dir  # see tests/conftest.py
    lines = "".join(
        json.dumps({"instruction": f"Name one fact about planet number {i}."}) + "\n"
        for i in range(10)
    )
    (tmp_path / "instructions.jsonl").write_text(lines, encoding="utf-8")
    local = {"device": "cpu"}
    cfg = {
        "run": {"name": "all-local", "output_dir": str(tmp_path / "runs"), "iterations": 2},
        "data": {"path": "instructions.jsonl"},
        "generator": {
            "backend": "local",
            "model": str(taught),
            "params": {"temperature": 0.0, "max_tokens": 64},
            "options": local,
        },
        "judge": {
            "backend": "local",
            "model": str(taught),
            "template": "judge_short",
            "samples_per_order": 2,
            "params": {"temperature": 1.0, "top_p": 0.9, "max_tokens": 16, "seed": 5},
            "options": local,
        },
        "finetune": {
            "backend": "local",
            "init_from": "previous",
            "poll_interval_s": 0.2,
            "max_length": 2048,
            "batch_size": 2,
            "learning_rate": 1e-4,
            "options": {"max_steps": 1, "device": "cpu"},
        },
        # three eval pairs: one is enough here (the loop on `local` is what is tested)
        "evaluation": {
            "eval_size": 3,
            "min_eval_pairs": 1,
            "params": {"temperature": 0.0, "max_tokens": 16},
        },
    }
    proc = _ste(_write(tmp_path / "local.toml", cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "all-local"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    jobs = manifest["finetune_jobs"]
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"]
    # init_from = "previous": iteration 2 continues iteration 1's adapter.
    assert jobs[1]["from_model"] == jobs[0]["model"]
    for j in (1, 2):
        adapter = Path(jobs[j - 1]["model"])
        assert (adapter / "adapter_config.json").is_file()
        metrics = json.loads((run / f"iter_{j}" / "metrics.json").read_text())
        assert metrics["judge_model"] == str(adapter)
        funnel = metrics["funnel"]
        assert funnel["judged"] == funnel["pairs"] * 2 * 2  # both orders, 2 samples each
        assert funnel["correct"] <= funnel["judged"]
        sft = (run / f"iter_{j}" / "sft.jsonl").read_text().splitlines()
        assert len(sft) == funnel["balanced_kept"] == funnel["sft_examples"] > 0
    # Every judge, seed included, was scored on the same frozen pairs in both orders.
    n_pairs = len((run / "eval_pairs.jsonl").read_text().splitlines())
    for j in (0, 1, 2):
        ev = json.loads((run / f"iter_{j}" / "metrics.json").read_text())["eval"]
        assert ev["n_items"] == n_pairs and ev["n_judgements"] == 2 * n_pairs


def test_ste_run_with_grpo_on_the_local_backend(tmp_path: Path, taught_model_dir: Path) -> None:
    """method = "grpo": no judge or select stage; the trainer samples and rewards judgements."""
    lines = "".join(json.dumps({"instruction": f"Name fruit number {i}."}) + "\n" for i in range(5))
    (tmp_path / "instructions.jsonl").write_text(lines, encoding="utf-8")
    local = {"device": "cpu"}
    short = {"temperature": 0.0, "max_tokens": 16}
    cfg = {
        "run": {"name": "grpo", "output_dir": str(tmp_path / "runs"), "iterations": 2},
        "data": {"path": "instructions.jsonl"},
        "generator": {
            "backend": "local",
            "model": str(taught_model_dir),
            "params": {"temperature": 0.0, "max_tokens": 48},
            "options": local,
        },
        "judge": {
            "backend": "local",
            "model": str(taught_model_dir),
            "template": "judge_short",
            "params": short,
            "options": local,
        },
        "finetune": {
            "backend": "local",
            "method": "grpo",
            "init_from": "previous",
            "poll_interval_s": 0.2,
            "batch_size": 4,
            "learning_rate": 1e-4,
            "grpo": {"num_generations": 2, "max_completion_length": 12},
            "options": {"max_steps": 1, "device": "cpu"},
        },
        "evaluation": {"eval_size": 2, "params": short},
    }
    config = _write(tmp_path / "grpo.toml", cfg)
    plan = subprocess.run(
        [*STE, "run", str(config), "--plan"], capture_output=True, text=True, cwd=tmp_path
    )
    assert plan.returncode == 0, plan.stderr
    planned = [line.split()[:2] for line in plan.stdout.splitlines()[2:] if line[:3] == "   "]
    assert ["1", "training_data"] in planned and ["2", "finetune"] in planned
    assert not [step for step in planned if step[1] in ("judge", "select")], plan.stdout

    proc = _ste(config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "grpo"
    jobs = json.loads((run / "manifest.json").read_text())["finetune_jobs"]
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"]
    assert jobs[1]["from_model"] == jobs[0]["model"]
    for i in (1, 2):
        assert not (run / f"iter_{i}" / "judgements.jsonl").exists()
        rows = [json.loads(r) for r in (run / f"iter_{i}" / "grpo.jsonl").read_text().splitlines()]
        pairs = (run / f"iter_{i}" / "pairs.jsonl").read_text().splitlines()
        assert len(rows) == 2 * len(pairs) > 0
        assert {(r["order"], r["label"]) for r in rows} == {("AB", "A"), ("BA", "B")}
        metrics = json.loads((run / f"iter_{i}" / "metrics.json").read_text())
        assert metrics["funnel"]["grpo_prompts"] == len(rows)
        assert metrics["judge_model"] == jobs[i - 1]["model"]
        trained = metrics["finetune"]["metrics"]
        assert {"reward", "reward/correct", "reward/consistency", "reward/format"} <= set(trained)
        assert metrics["eval"]["n_items"] > 0


def test_ctrl_c_during_a_local_finetune_says_the_worker_stops_too(
    tmp_path: Path, tiny: Path
) -> None:
    """A local training worker dies with ste (unlike a hosted job): the message says so, and
    the worker is gone when `ste run` has exited."""
    import os
    import signal
    import time

    from ste_backends.local.jobs import pid_alive

    lines = "".join(
        json.dumps({"instruction": f"Give one tip about topic {i} in a sentence."}) + "\n"
        for i in range(12)
    )
    (tmp_path / "instructions.jsonl").write_text(lines, encoding="utf-8")
    with FakeProvider() as oa:
        openai = {"backend": "openai", "options": {"base_url": oa.url + "/v1"}}
        cfg = {
            "run": {"name": "ctrlc", "output_dir": str(tmp_path / "runs"), "iterations": 1},
            "data": {"path": "instructions.jsonl"},
            "generator": {**openai, "model": "fake-acc90"},
            "judge": {**openai, "model": "fake-acc80", "samples_per_order": 2},
            "finetune": {
                "backend": "local",
                "base_model": str(tiny),
                "poll_interval_s": 0.2,
                "max_length": 2048,
                "batch_size": 1,
                # long enough to be interrupted while it trains
                "options": {"max_steps": 100000, "device": "cpu"},
            },
            "evaluation": {"eval_size": 3},
        }
        config = _write(tmp_path / "ctrlc.toml", cfg)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STE_")}
        # Its own session: Ctrl-C in a terminal reaches the whole foreground process group.
        proc = subprocess.Popen(
            [*STE, "run", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            start_new_session=True,
        )
        live = tmp_path / "runs" / "ctrlc" / "status.json"
        deadline = time.monotonic() + 200
        job: dict = {}
        while not (job.get("step") or 0) >= 1:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the fine-tune never started training"
            time.sleep(0.2)
            if live.exists():
                job = json.loads(live.read_text() or "{}").get("finetune") or {}
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert "training worker of job" in err and "stops too" in err, err[-3000:]
    assert "keeps running" not in err
    worker = json.loads((Path(job["job_id"]) / "status.json").read_text())
    assert worker["status"] == "cancelled"
    assert not pid_alive(int(worker["pid"]))
