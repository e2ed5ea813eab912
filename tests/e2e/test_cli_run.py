"""End to end: the `ste run` CLI in a subprocess against the fake provider on 127.0.0.1.

Generator and judge use the `openai` backend (base_url = an `OpenAIFake` + "/v1"); fine-tuning
uses the `together` backend pointed at a `TogetherFake` (files, fine-tunes, serving and chat of
the fine-tuned judge). Backends are found through their entry points
(STE_PLUGINS unset), exactly as for a user.

The fake answers deterministically, so an uninterrupted run is the reference every other run
(with faults, or killed and resumed) must reproduce byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ste_backends.openai.fake import OpenAIFake
from ste_backends.together.fake import TogetherFake
from ste_core.config import dumps_toml
from ste_core.testing.fake_provider import FakeProvider, FaultPlan

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# The installed console script, next to the interpreter running the tests.
STE = [str(Path(sys.executable).with_name("ste"))]
# Files that must be identical between runs that answer the same requests.
OUTPUTS = (
    "eval_pairs.jsonl",
    "data/train.jsonl",
    "iter_0/eval.jsonl",
    "iter_1/pairs.jsonl",
    "iter_1/judgements.jsonl",
    "iter_1/selected.jsonl",
    "iter_1/sft.jsonl",
    "iter_1/dpo.jsonl",
    "iter_1/train.together.sft.jsonl",
    "iter_1/eval.jsonl",
    "iter_2/judgements.jsonl",
    "iter_2/sft.jsonl",
    "iter_2/eval.jsonl",
)


#: finetune options that serve fine-tuned judges on dedicated endpoints of the fake
DEDICATED = {
    "serving": "dedicated",
    "hardware": "1xnvidia-h100-80gb",
    "endpoint_poll_interval_s": 0.02,
}


def _instructions(n: int) -> list[str]:
    words = [
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
    ]
    return [
        f"Explain how {words[i % 10]} relates to {words[(3 * i + 1) % 10]} (case {i})."
        for i in range(n)
    ]


@pytest.fixture
def fakes() -> Iterator[tuple[FakeProvider, FakeProvider]]:
    with (
        OpenAIFake(latency_s=0.005) as oa,
        TogetherFake() as tg,
    ):
        yield oa, tg
        assert oa.errors == [] and tg.errors == []  # no handler crashed


def _inference(backend: str, model: str, oa: FakeProvider, tg: FakeProvider) -> dict[str, Any]:
    """The generator/judge section for `backend`, pointed at the fakes."""
    if backend == "openai":
        return {"backend": "openai", "model": model, "options": {"base_url": oa.url + "/v1"}}
    if backend == "openai-batch":
        batched = {"base_url": oa.url + "/v1", "batch": True, "batch_poll_interval": 0.02}
        return {"backend": "openai", "model": model, "options": batched}
    if backend == "litellm":
        # hosted_vllm/: litellm's route for a self-hosted OpenAI-compatible server.
        return {
            "backend": "litellm",
            "model": f"hosted_vllm/{model}",
            "options": {"api_base": oa.url + "/v1"},
        }
    if backend in ("together", "together-batch"):
        options: dict[str, Any] = {"base_url": tg.url, "price_lookup": False}
        if backend == "together-batch":
            options |= {"batch": True, "batch_poll_interval_s": 0.05}
        return {"backend": "together", "model": model, "options": options}
    raise AssertionError(backend)


def _write_run(
    tmp: Path,
    oa: FakeProvider,
    tg: FakeProvider,
    ft_options: dict[str, Any] | None = None,
    inference: str = "openai",
    **limits: Any,
) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "instructions.jsonl").write_text(
        "".join(json.dumps({"instruction": t}) + "\n" for t in _instructions(40)), "utf-8"
    )
    lim = {"concurrency": 4, "backoff_initial_s": 0.01, "backoff_max_s": 0.1, **limits}
    cfg = {
        "run": {"name": "e2e", "output_dir": str(tmp / "runs"), "iterations": 2, "seed": 1},
        "data": {"path": "instructions.jsonl"},
        "generator": {**_inference(inference, "fake-acc90", oa, tg), "limits": lim},
        "judge": {
            **_inference(inference, "fake-acc70", oa, tg),
            "samples_per_order": 3,
            "limits": lim,
        },
        "finetune": {
            "backend": "together",
            "base_model": "fake-acc70",  # the judge's name without a litellm route prefix
            "poll_interval_s": 0.05,
            "options": {"base_url": tg.url, **(ft_options or {})},
            "inference_options": {"base_url": tg.url},
        },
        "evaluation": {"eval_size": 10},
    }
    path = tmp / "config.toml"
    path.write_text(dumps_toml(cfg), encoding="utf-8")
    return path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STE_", "TOGETHER_"))}
    env.pop("OPENAI_API_KEY", None)
    env["TOGETHER_API_KEY"] = "fake-together-key"  # the fake accepts any key
    return env


def _ste(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STE, "run", str(config), "--log-json", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=100,
        cwd=config.parent,
    )


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _funnel(stdout: str) -> dict[tuple[int, str], dict[str, int]]:
    return {
        (e["iteration"], e["stage"]): e["counts"]
        for e in _events(stdout)
        if e["event"] == "stage_finished" and not e["skipped"]
    }


def _assert_same_outputs(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for i in (0, 1, 2):
        ma = json.loads((a / f"iter_{i}" / "metrics.json").read_text())
        mb = json.loads((b / f"iter_{i}" / "metrics.json").read_text())
        assert ma["eval"] == mb["eval"] and ma["judge_model"] == mb["judge_model"]


def _reference(tmp: Path, oa: FakeProvider, tg: FakeProvider) -> tuple[Path, dict[str, int]]:
    before = oa.counter["chat"] + tg.counter["chat"]
    oa_before = oa.counter["chat"]
    creates = tg.counter["ft_create"]
    proc = _ste(_write_run(tmp / "ref", oa, tg))
    assert proc.returncode == 0, proc.stderr
    run = tmp / "ref" / "runs" / "e2e"
    counts = {
        "chat": oa.counter["chat"] + tg.counter["chat"] - before,
        "openai_chat": oa.counter["chat"] - oa_before,
        "ft_create": tg.counter["ft_create"] - creates,
    }
    return run, counts


def test_two_iterations_with_injected_faults_match_the_clean_run(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    oa, tg = fakes
    ref, ref_counts = _reference(tmp_path, oa, tg)
    assert ref_counts["ft_create"] == 2
    # The loop worked: the fine-tuned judges (served by the together fake) beat the seed judge.
    m = {i: json.loads((ref / f"iter_{i}" / "metrics.json").read_text()) for i in (0, 1, 2)}
    assert m[1]["judge_model"].endswith("it1-ft1") and m[2]["judge_model"].endswith("it2-ft1")
    assert m[2]["eval"]["accuracy"] >= m[0]["eval"]["accuracy"]
    for name in ("report.md", "summary.md", "manifest.json", "config.toml"):
        assert (ref / name).exists()
    assert "fake-together-key" not in "".join(
        p.read_text(errors="ignore") for p in ref.rglob("*") if p.is_file()
    )

    oa.faults = FaultPlan(
        seed=3,
        rate_limit_every=7,
        retry_after_s=0.05,
        server_error_every=11,
        timeout_every=29,
        timeout_sleep_s=2.0,
        malformed_every=13,
        routes=frozenset({"chat"}),
    )
    oa.latency_s = 0.01
    faulty_chat_before = oa.counter["chat"]
    proc = _ste(_write_run(tmp_path / "faulty", oa, tg, timeout_s=0.5, max_retries=10))
    assert proc.returncode == 0, proc.stderr
    faulty = tmp_path / "faulty" / "runs" / "e2e"
    _assert_same_outputs(ref, faulty)
    # The same funnel as the clean run, with no request lost to an API error ...
    rerun = _ste(_write_run(tmp_path / "ref", oa, tg))
    assert rerun.returncode == 0 and _funnel(rerun.stdout) == {}  # finished: all skipped
    funnel = _funnel(proc.stdout)
    assert funnel[(1, "judge")]["failures"] == 0 and funnel[(0, "evaluate")]["failures"] == 0
    assert funnel[(1, "worse")]["pairs"] == sum(1 for _ in (ref / "iter_1/pairs.jsonl").open())
    # ... while the fake did inject faults (more chat requests than answers needed).
    retried = oa.counter["chat"] - faulty_chat_before - ref_counts["openai_chat"]
    assert retried >= ref_counts["openai_chat"] // 5
    manifest = json.loads((faulty / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"


@pytest.fixture(scope="module")
def openai_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """A clean two-iteration run through the `openai` backend, on fakes of its own."""
    tmp = tmp_path_factory.mktemp("openai-reference")
    with (
        OpenAIFake(latency_s=0.005) as oa,
        TogetherFake() as tg,
    ):
        return _reference(tmp, oa, tg)


@pytest.mark.parametrize("inference", ["together", "together-batch", "openai-batch", "litellm"])
def test_every_inference_backend_runs_the_same_loop(
    tmp_path: Path,
    fakes: tuple[FakeProvider, FakeProvider],
    openai_reference: tuple[Path, dict[str, int]],
    inference: str,
) -> None:
    """The fake answers from the request's content alone, so a backend that sends the same
    requests (messages, sampling parameters, seeds, one request per sample where needed) must
    reproduce the openai run's files byte for byte; a backend that drops a parameter, loses a
    sample or mixes up the order of choices shows up as a difference."""
    oa, tg = fakes
    ref, ref_counts = openai_reference
    proc = _ste(_write_run(tmp_path, oa, tg, inference=inference))
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "e2e"
    for name in OUTPUTS:
        got = (run / name).read_text(encoding="utf-8")
        if inference == "litellm":
            got = got.replace("hosted_vllm/", "")  # the route prefix is part of its model names
        assert got == (ref / name).read_text(encoding="utf-8"), name
    assert json.loads((run / "manifest.json").read_text())["status"] == "succeeded"
    # The calls went where the configuration says.
    if inference == "litellm":
        assert oa.counter["chat"] == ref_counts["openai_chat"]
    elif inference == "openai-batch":
        # The same requests, each a line of a batch (one per stage and iteration), none direct.
        assert oa.counter["batches_create"] >= 6 and oa.counter["chat"] == 0
        assert oa.counter["batch_lines"] == ref_counts["openai_chat"]
    else:
        assert oa.counter["chat"] == 0
    if inference == "together":
        assert tg.counter["chat"] == ref_counts["chat"] and tg.counter["batches_create"] == 0
    if inference == "together-batch":
        # Generation and judging went through the Batch API: one batch per stage and iteration.
        assert tg.counter["batches_create"] >= 6
        assert tg.counter["chat"] < ref_counts["chat"] // 10


def _run_until(config: Path, stop: Any) -> None:
    """Start `ste run`, SIGKILL it as soon as `stop()` is true (polled), and wait for it."""
    proc = subprocess.Popen(
        [*STE, "run", str(config), "--quiet"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=config.parent,
    )
    deadline = time.monotonic() + 60
    try:
        while not stop():
            if proc.poll() is not None:
                pytest.fail(f"run ended before the kill point: {proc.stderr.read().decode()}")
            assert time.monotonic() < deadline, "kill point never reached"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()


def test_killed_while_judging_then_resumed_gives_identical_outputs(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    oa, tg = fakes
    ref, ref_counts = _reference(tmp_path, oa, tg)
    config = _write_run(tmp_path / "killed", oa, tg)
    start = oa.counter["chat"] + tg.counter["chat"]
    oa_start = oa.counter["chat"]
    # 20 eval + 60 train generation requests, 18 seed-judge eval requests: then judging.
    _run_until(config, lambda: oa.counter["chat"] - oa_start >= 120)
    run = tmp_path / "killed" / "runs" / "e2e"
    store_state = json.loads((run / "manifest.json").read_text())
    assert store_state["status"] == "running"  # killed: no chance to write anything
    proc = _ste(config)
    assert proc.returncode == 0, proc.stderr
    _assert_same_outputs(ref, run)
    used = oa.counter["chat"] + tg.counter["chat"] - start
    # Only requests in flight at the kill (at most `concurrency` = 4) can be asked twice.
    assert ref_counts["chat"] <= used <= ref_counts["chat"] + 4
    skipped = [
        e["stage"] for e in _events(proc.stdout) if e["event"] == "stage_finished" and e["skipped"]
    ]
    assert skipped[:4] == ["load", "split", "eval_pairs", "baseline"]


def test_killed_while_a_finetune_runs_reattaches_to_the_same_job(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    oa, tg = fakes
    ref, ref_counts = _reference(tmp_path, oa, tg)
    # Slow jobs (the schedule is read at each poll; it must stay as long until the end).
    tg.together.ft_schedule = ["queued"] + ["running"] * 20 + ["completed"]
    config = _write_run(tmp_path / "killed", oa, tg)
    chat0 = oa.counter["chat"] + tg.counter["chat"]
    creates0 = tg.counter["ft_create"]
    polls0 = tg.counter["ft_retrieve"]
    # Kill while iteration 1's job is being polled: no chat request is in flight then.
    _run_until(
        config,
        lambda: tg.counter["ft_create"] > creates0 and tg.counter["ft_retrieve"] > polls0 + 3,
    )
    proc = _ste(config)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "killed" / "runs" / "e2e"
    _assert_same_outputs(ref, run)
    # One job per iteration in total: the resumed run polled the job it had submitted ...
    assert tg.counter["ft_create"] - creates0 == ref_counts["ft_create"] == 2
    funnel = _funnel(proc.stdout)
    assert funnel[(1, "finetune")]["resumed"] == 1
    # ... and no chat request was made twice across the two processes.
    assert oa.counter["chat"] + tg.counter["chat"] - chat0 == ref_counts["chat"]


def test_killed_inside_submit_reattaches_to_the_job_the_provider_created(
    tmp_path: Path,
    fakes: tuple[FakeProvider, FakeProvider],
    openai_reference: tuple[Path, dict[str, int]],
) -> None:
    """The narrowest window: Together has created the job but its answer (the job id) has not
    reached the client when the process dies. The resumed run finds the job by its suffix in
    Together's job list instead of paying for a second one."""
    oa, tg = fakes
    ref, ref_counts = openai_reference
    tg.reply_delay_s["ft_create"] = 5.0  # the job exists; its id is on the way
    config = _write_run(tmp_path / "killed", oa, tg)
    _run_until(config, lambda: len(tg.together.st["jobs"]) == 1)
    assert tg.counter["ft_create"] == 1
    tg.reply_delay_s.clear()
    proc = _ste(config)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "killed" / "runs" / "e2e"
    _assert_same_outputs(ref, run)
    assert tg.counter["ft_create"] == ref_counts["ft_create"] == 2  # one job per iteration
    assert tg.counter["ft_list"] >= 1
    assert _funnel(proc.stdout)[(1, "finetune")]["resumed"] == 1
    assert "re-attaching" in proc.stdout + proc.stderr


def test_fresh_budget_and_configuration_errors(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    oa, tg = fakes
    config = _write_run(tmp_path / "b", oa, tg)
    text = config.read_text() + "\n[budget]\nmax_requests = 50\n"
    config.write_text(text)
    proc = _ste(config)
    assert proc.returncode == 3, proc.stderr
    assert "budget.max_requests = 50" in proc.stderr
    assert oa.counter["chat"] <= 50
    config.write_text(text.replace("max_requests = 50", "max_requests = 5000"))
    proc = _ste(config, "--iterations", "1")
    assert proc.returncode == 0, proc.stderr
    # A result-changing edit is refused on resume; --fresh starts over.
    config.write_text(config.read_text().replace("samples_per_order = 3", "samples_per_order = 2"))
    proc = _ste(config, "--iterations", "1")
    assert proc.returncode == 2 and "judge.samples_per_order" in proc.stderr
    proc = _ste(config, "--iterations", "1", "--fresh")
    assert proc.returncode == 0, proc.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text().replace("samples_per_order = 2", "samples_per_order = -1"))
    proc = _ste(bad)
    assert proc.returncode == 2
    assert "judge.samples_per_order: got -1; must be >= 1" in proc.stderr


def test_the_request_budget_holds_over_kills_and_resumes(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    """`max_requests = N`: at most N requests reach the provider, with 32 in flight, 30% of
    them failing with a 500 (and retried), over five sessions killed with SIGKILL mid-stage and
    resumed: every session's budget starts from the ledger, which counts what the killed ones
    sent, not from the stages that happened to finish."""
    oa, tg = fakes
    oa.faults = FaultPlan(seed=5, server_error_p=0.3, routes=frozenset({"chat"}))
    oa.latency_s = 0.01
    limit = 250  # a clean run needs more than this
    config = _write_run(tmp_path, oa, tg, concurrency=32, max_retries=20)
    config.write_text(config.read_text() + f"\n[budget]\nmax_requests = {limit}\n")

    def sent() -> int:
        return oa.counter["chat"] + tg.counter["chat"]

    for _ in range(5):
        start = sent()
        proc = subprocess.Popen(
            [*STE, "run", str(config), "--quiet"], env=_env(), cwd=config.parent
        )
        deadline = time.monotonic() + 60
        while sent() - start < 15 and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        proc.kill()
        proc.wait(timeout=30)
        assert sent() <= limit
    final = _ste(config)
    assert final.returncode == 3, final.stderr
    assert "stopped at the budget" in final.stderr and f"max_requests = {limit}" in final.stderr
    assert sent() <= limit
    manifest = json.loads((tmp_path / "runs" / "e2e" / "manifest.json").read_text())
    assert manifest["status"] == "stopped_at_budget"
    assert [s["status"] for s in manifest["sessions"]][:5] == ["killed"] * 5


def test_a_refused_key_stops_the_run_at_once_and_it_resumes_after_the_fix(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    """Generator and judge on `together`; the provider refuses the key. The run stops within
    the first requests with the provider's words and what to do, not after one failed request
    per item; with the right key the same command finishes."""
    oa, tg = fakes
    tg.api_key = "the-right-key"
    config = _write_run(tmp_path, oa, tg, inference="together")
    env = {**_env(), "TOGETHER_API_KEY": "a-wrong-key"}
    proc = subprocess.run(
        [*STE, "run", str(config), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        cwd=config.parent,
    )
    assert proc.returncode == 1, proc.stderr
    assert "AuthenticationError" in proc.stderr and "TOGETHER_API_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tg.counter["chat"] <= 4  # the limits' concurrency: those already in flight, no more
    env["TOGETHER_API_KEY"] = "the-right-key"
    fixed = subprocess.run(
        [*STE, "run", str(config), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        cwd=config.parent,
    )
    assert fixed.returncode == 0, fixed.stderr


def test_a_graceful_stop_keeps_the_answers_in_flight(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    """SIGTERM during generation, then during judging: each time no new request goes out, the
    ones in flight finish and are cached, and the run stops (exit 130). Resuming asks none of
    them again: over the three sessions the fake answers exactly the requests of a clean run,
    and the files are the clean run's."""
    oa, tg = fakes
    ref, ref_counts = _reference(tmp_path, oa, tg)
    oa.latency_s = 0.1  # four requests on the wire at any moment
    config = _write_run(tmp_path / "stop", oa, tg)
    start = oa.counter["chat"]
    for stop_after in (20, 120):  # in eval_pairs (generation), then in a judging stage
        proc = subprocess.Popen(
            [*STE, "run", str(config)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=config.parent,
        )
        deadline = time.monotonic() + 60
        while oa.counter["chat"] - start < stop_after:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "stopping:" in err and "request(s) in flight" in err
    done = _ste(config)
    assert done.returncode == 0, done.stderr
    assert oa.counter["chat"] - start == ref_counts["openai_chat"]  # not one asked twice
    _assert_same_outputs(ref, tmp_path / "stop" / "runs" / "e2e")


def test_sigterm_while_a_dedicated_endpoint_judges_tears_it_down(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    oa, tg = fakes
    ref, _ = _reference(tmp_path, oa, tg)  # served serverless
    tg.together.serverless_lora = False  # fine-tunes need a dedicated endpoint (as in the seed)
    tg.together.deploy_polls_to_ready = 1
    config = _write_run(tmp_path / "term", oa, tg, DEDICATED)
    chat0, creates0 = tg.counter["chat"], tg.counter["endpoints_create"]
    proc = subprocess.Popen(
        [*STE, "run", str(config), "--log-json"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=config.parent,
    )
    deadline = time.monotonic() + 60
    # Wait until the endpoint serving M1 answers chat requests, then stop the run like a scheduler
    # (SIGTERM) would.
    while tg.counter["chat"] - chat0 < 5:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "re-run the same command to resume" in err
    run = tmp_path / "term" / "runs" / "e2e"
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
    assert tg.counter["endpoints_create"] - creates0 == 1
    assert tg.counter["endpoints_delete"] == tg.counter["endpoints_create"]  # torn down
    # Resuming finishes the run; every endpoint it creates is deleted again.
    done = _ste(config)
    assert done.returncode == 0, done.stderr
    assert tg.counter["endpoints_create"] == tg.counter["endpoints_delete"] == creates0 + 3
    # Judges are named (and cached) by their fine-tuned model, not by the session's endpoint:
    # the results equal the serverless run's, and the resumed session reused the answers the
    # interrupted one got.
    _assert_same_outputs(ref, run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert all(e["served_as"] != e["model"] for e in manifest["endpoints"])


def _check(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STE, "run", str(config), "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        cwd=config.parent,
    )


def test_check_sends_nothing_names_what_is_missing_and_bounds_the_real_run(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    import re

    oa, tg = fakes

    def sent() -> int:
        return sum(oa.counter.values()) + sum(tg.counter.values())

    config = _write_run(tmp_path / "check", oa, tg)
    no_key = {k: v for k, v in _env().items() if k != "TOGETHER_API_KEY"}
    proc = _check(config, no_key)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "finetune.backend 'together'" in proc.stderr and "TOGETHER_API_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr
    misspelt = _write_run(tmp_path / "misspelt", oa, tg, ft_options={"servng": "auto"})
    proc = _check(misspelt, _env())
    assert proc.returncode == 2 and "finetune.options.servng" in proc.stderr
    proc = _check(config, _env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sent() == 0 and not (tmp_path / "check" / "runs").exists()
    found = re.search(r"still needs: ≤(\d+) requests", proc.stdout)
    assert found, proc.stdout
    _, counts = _reference(tmp_path, oa, tg)
    # What the real run sent: every chat request (the budget's count, plus Together's 1-token
    # serverless probes of the served judges), at most the estimate.
    assert 0 < counts["chat"] <= int(found.group(1))


# -- Batch API jobs over kills: re-attached, never paid twice ----------------------------------

#: Status GETs before a fake batch completes: the kill lands while batches run.
BATCH_POLLS = 6
#: The default limits: the batcher cuts a stage's requests into the same chunks (the same
#: batches) in every session, which re-attaching by the digest of a batch's lines relies on.
BATCH_LIMITS: dict[str, Any] = {}


def _batch_counts(tg: FakeProvider) -> dict[str, int]:
    return {k: tg.counter[k] for k in ("batches_create", "batch_lines", "chat")}


def _since(tg: FakeProvider, start: dict[str, int]) -> dict[str, int]:
    return {k: v - start[k] for k, v in _batch_counts(tg).items()}


@pytest.fixture(scope="module")
def together_batch_reference(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, int]]:
    """A clean run through Together's Batch API, on fakes of its own (Together hands out the
    same file id for the same content: runs sharing a fake would share files)."""
    tmp = tmp_path_factory.mktemp("together-batch-reference")
    with OpenAIFake(latency_s=0.005) as oa, TogetherFake() as tg:
        tg.together.batch_polls = BATCH_POLLS
        proc = _ste(_write_run(tmp, oa, tg, inference="together-batch", **BATCH_LIMITS))
        assert proc.returncode == 0, proc.stderr
        return tmp / "runs" / "e2e", _batch_counts(tg)


def _ledger_totals(run_dir: Path) -> tuple[int, float]:
    from ste_core.engine.store import RunStore

    with RunStore(run_dir / "store.sqlite") as store:
        return store.ledger_totals()


def _batches_where(tg: FakeProvider, test: Any) -> list[dict[str, Any]]:
    with tg.lock:
        return [b for b in tg.together.st["batches"].values() if test(b)]


@pytest.mark.parametrize("kill_point", ["batch_created", "batch_running"])
def test_a_run_killed_around_a_batch_reattaches_and_pays_each_line_once(
    tmp_path: Path,
    fakes: tuple[FakeProvider, FakeProvider],
    together_batch_reference: tuple[Path, dict[str, int]],
    kill_point: str,
) -> None:
    """SIGKILL (a) when Together has created a batch whose id has not reached the run (found
    by its input file), (b) while a batch runs (polled by its id): the resumed run collects
    that batch instead of submitting its lines again."""
    oa, tg = fakes
    ref, ref_counts = together_batch_reference
    tg.together.batch_polls = BATCH_POLLS
    config = _write_run(tmp_path / "killed", oa, tg, inference="together-batch", **BATCH_LIMITS)
    if kill_point == "batch_created":
        tg.reply_delay_s["batches_create"] = 1.0  # the batch exists; its id is on the way

        def stop() -> bool:
            return len(_batches_where(tg, lambda b: True)) >= 2
    else:

        def stop() -> bool:
            return len(_batches_where(tg, lambda b: True)) >= 2 and bool(
                _batches_where(tg, lambda b: b["status"] == "IN_PROGRESS" and b["_polls"] >= 2)
            )

    _run_until(config, stop)
    killed = _batch_counts(tg)
    # The kill left a batch unfinished: its lines have not run.
    assert _batches_where(tg, lambda b: b["status"] != "COMPLETED")
    tg.reply_delay_s.clear()
    proc = _ste(config)
    assert proc.returncode == 0, proc.stderr
    _assert_same_outputs(ref, tmp_path / "killed" / "runs" / "e2e")
    used = _batch_counts(tg)
    assert used["batches_create"] == ref_counts["batches_create"]  # no batch submitted twice
    assert used["batch_lines"] == ref_counts["batch_lines"]  # no line run (paid) twice
    assert used["chat"] == ref_counts["chat"]
    assert killed["batches_create"] < used["batches_create"]  # the kill came mid-run
    assert "Re-attaching to batch" in proc.stdout + proc.stderr
    # The budget counts each line once too: the resumed session takes the killed one's
    # reservations over.
    assert _ledger_totals(tmp_path / "killed" / "runs" / "e2e")[0] == _ledger_totals(ref)[0]
    assert not _batches_where(tg, lambda b: b["status"] == "CANCELLED")


@pytest.fixture(scope="module")
def openai_batch_reference(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, int]]:
    """A clean run whose generator and judge go through OpenAI's Batch API (fakes of its own)."""
    tmp = tmp_path_factory.mktemp("openai-batch-reference")
    with OpenAIFake(latency_s=0.005) as oa, TogetherFake() as tg:
        proc = _ste(_write_run(tmp, oa, tg, inference="openai-batch"))
        assert proc.returncode == 0, proc.stderr
        return tmp / "runs" / "e2e", _openai_batch_counts(oa)


def _openai_batch_counts(oa: FakeProvider) -> dict[str, int]:
    return {k: oa.counter[k] for k in ("batches_create", "batch_lines", "chat")}


def _openai_batches(oa: FakeProvider, *statuses: str) -> list[dict[str, Any]]:
    with oa.lock:
        batches = oa.state.get("openai_batches", {}).values()
        return [b for b in batches if not statuses or b["status"] in statuses]


@pytest.mark.parametrize("kill_point", ["batch_created", "batch_running"])
def test_a_run_killed_around_an_openai_batch_reattaches_and_pays_each_line_once(
    tmp_path: Path,
    fakes: tuple[FakeProvider, FakeProvider],
    openai_batch_reference: tuple[Path, dict[str, int]],
    kill_point: str,
) -> None:
    """The same over OpenAI's Batch API: SIGKILL (a) when OpenAI has created a batch whose id
    has not reached the run, (b) while a batch runs; the resumed run collects that batch, runs
    no line twice, and its budget counts each line once."""
    oa, tg = fakes
    ref, ref_counts = openai_batch_reference
    config = _write_run(tmp_path / "killed", oa, tg, inference="openai-batch")
    if kill_point == "batch_created":
        oa.reply_delay_s["batches_create"] = 1.0  # the batch exists; its id is on the way

        def stop() -> bool:
            return len(_openai_batches(oa)) >= 2
    else:
        oa.reply_delay_s["batches_retrieve"] = 0.3  # each poll slow: the kill lands mid-batch

        def stop() -> bool:
            return len(_openai_batches(oa)) >= 2 and bool(_openai_batches(oa, "in_progress"))

    _run_until(config, stop)
    killed = _openai_batch_counts(oa)
    assert _openai_batches(oa, "validating", "in_progress")  # a batch whose lines have not run
    oa.reply_delay_s.clear()
    proc = _ste(config)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "killed" / "runs" / "e2e"
    _assert_same_outputs(ref, run)
    used = _openai_batch_counts(oa)
    assert used["batches_create"] == ref_counts["batches_create"]  # no batch submitted twice
    assert used["batch_lines"] == ref_counts["batch_lines"]  # no line run (paid) twice
    assert used["chat"] == ref_counts["chat"] == 0
    assert killed["batches_create"] < used["batches_create"]  # the kill came mid-run
    assert "re-attaching to batch" in (proc.stdout + proc.stderr).lower()
    assert not _openai_batches(oa, "cancelled", "cancelling")
    assert _ledger_totals(run)[0] == _ledger_totals(ref)[0]  # the budget counts each once


def test_killed_around_a_dedicated_endpoint_reuses_it_and_leaves_none(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    """SIGKILL (no teardown possible) (a) inside the call that creates M1's endpoint, (b) while
    it provisions, (c) while it judges; each resumed session takes the endpoint over from the
    ledger instead of paying for another, and the last one finishes the run: one endpoint per
    judge served, none left at Together, and the clean run's files."""
    oa, tg = fakes
    tg.together.serverless_lora = False
    tg.together.deploy_polls_to_ready = 1
    proc = _ste(_write_run(tmp_path / "ref", oa, tg, DEDICATED))
    assert proc.returncode == 0, proc.stderr
    ref_creates = tg.counter["endpoints_create"]
    assert ref_creates == 2 and tg.together.st["endpoints"] == {}  # M1 and M2

    config = _write_run(tmp_path / "killed", oa, tg, DEDICATED)
    creates0 = tg.counter["endpoints_create"]
    # (a) the endpoint exists at Together; its id never reaches the dying process
    tg.reply_delay_s["endpoints_create"] = 5.0
    _run_until(config, lambda: len(tg.together.st["endpoints"]) == 1)
    tg.reply_delay_s.clear()
    # (b) provisioning takes forever, until the kill
    tg.together.deploy_polls_to_ready = 10**6
    polls0 = tg.counter["deployments_get"]
    _run_until(config, lambda: tg.counter["deployments_get"] >= polls0 + 2)
    tg.together.deploy_polls_to_ready = 1
    # (c) READY and judging with M1
    chat0 = tg.counter["chat"]
    _run_until(config, lambda: tg.counter["chat"] - chat0 >= 5)
    assert len(tg.together.st["endpoints"]) == 1  # the one endpoint, through three kills
    done = _ste(config)
    assert done.returncode == 0, done.stderr
    assert tg.together.st["endpoints"] == {}
    assert tg.counter["endpoints_create"] - creates0 == ref_creates
    assert "Reusing Together endpoint" in done.stdout + done.stderr
    run = tmp_path / "killed" / "runs" / "e2e"
    _assert_same_outputs(tmp_path / "ref" / "runs" / "e2e", run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["cost_usd"]["endpoints"] > 0


def test_a_judge_whose_every_evaluation_request_fails_fails_the_run(
    tmp_path: Path, fakes: tuple[FakeProvider, FakeProvider]
) -> None:
    """Issue 14: the fine-tuned judge needs a dedicated endpoint that nobody deployed, so
    Together answers 400 to every evaluation request. The run fails with the judge, the count
    and the provider's words; no accuracy and no paired test are written for that judge."""
    import tomllib

    oa, tg = fakes
    tg.together.serverless_lora = False  # while the config asks for serverless serving
    config = _write_run(tmp_path, oa, tg, {"serving": "serverless"})
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    data["run"]["iterations"] = 1
    data["evaluation"]["eval_size"] = 8  # 16 requests: under the scheduler's own stop (20)
    config.write_text(dumps_toml(data), encoding="utf-8")
    proc = subprocess.run(
        [*STE, "run", str(config), "--quiet"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=100,
        cwd=config.parent,
    )
    assert proc.returncode == 1, proc.stderr
    err = " ".join(proc.stderr.split())
    assert "EvaluationFailed: evaluation of judge 1" in err and "Traceback" not in err
    assert "items could not be scored" in err and "non-serverless model" in err
    run = tmp_path / "runs" / "e2e"
    assert str(run.resolve() / "iter_1" / "eval.jsonl") in err
    assert json.loads((run / "iter_0" / "metrics.json").read_text())["eval"]["accuracy"] > 0
    assert not (run / "iter_1" / "metrics.json").exists()
    summary = (run / "summary.md").read_text()
    assert "| 0 |" in summary and "| 1 |" not in summary
    report = (run / "report.md").read_text()
    assert "| 1 vs 0 (seed) |" not in report and "none (too many errors)" in report
