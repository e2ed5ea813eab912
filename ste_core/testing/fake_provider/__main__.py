"""Run the fake provider from the command line (manual testing, CI scripts).

    python -m ste_core.testing.fake_provider --port 8765 --latency 0.1 \
        --routes ste_backends.together.fake:register_routes \
        --rate-limit-every 10 --retry-after 1 --server-error-p 0.05 --seed 0

Without `--routes` it serves the generic OpenAI-compatible chat and model list only; each
`--routes MODULE:FUNCTION` adds a provider's routes (a route extension, see server.py), e.g.
`ste_backends.openai.fake:register_routes` for OpenAI's Files and Batch API.

Prints the base URL (and writes it to --ready-file when given, for scripts using --port 0), then
serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import pkgutil
import signal
import sys
import threading
from pathlib import Path

from ste_core.testing.fake_provider.faults import FaultPlan
from ste_core.testing.fake_provider.model import ScriptedModel
from ste_core.testing.fake_provider.server import FakeProvider, RouteExtension


def route_extension(spec: str) -> RouteExtension:
    """`MODULE:FUNCTION` -> that function (an argparse type: a bad spec is a usage error)."""
    if ":" not in spec:
        raise argparse.ArgumentTypeError(f"expected MODULE:FUNCTION, got {spec!r}")
    try:
        extension = pkgutil.resolve_name(spec)
    except (ImportError, AttributeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"cannot import {spec!r}: {exc}") from exc
    if not callable(extension):
        raise argparse.ArgumentTypeError(f"{spec!r} is not callable")
    return extension


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ste_core.testing.fake_provider",
        description="A fake OpenAI-compatible provider on 127.0.0.1.",
    )
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument(
        "--routes",
        type=route_extension,
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="add a provider's routes, e.g. ste_backends.together.fake:register_routes "
        "(repeatable)",
    )
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    p.add_argument("--state-dir", type=Path, default=None, help="persist route state here")
    p.add_argument("--ready-file", type=Path, default=None, help="write the URL here when ready")
    p.add_argument("--api-key", default=None, help="require this bearer token (else any)")
    f = p.add_argument_group("faults (seeded; see FaultPlan)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--rate-limit-every", type=int, default=None)
    f.add_argument("--rate-limit-p", type=float, default=0.0)
    f.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of 429s (s)")
    f.add_argument("--server-error-every", type=int, default=None)
    f.add_argument("--server-error-p", type=float, default=0.0)
    f.add_argument("--server-error-status", type=int, default=500)
    f.add_argument("--timeout-every", type=int, default=None)
    f.add_argument("--timeout-p", type=float, default=0.0)
    f.add_argument("--timeout-sleep", type=float, default=30.0, help="hold time of a timeout (s)")
    f.add_argument("--malformed-every", type=int, default=None)
    f.add_argument("--malformed-p", type=float, default=0.0)
    f.add_argument("--fail-first", type=int, default=0)
    f.add_argument("--fail-first-status", type=int, default=500)
    f.add_argument("--fault-routes", default=None, help="comma-separated route names (default all)")
    m = p.add_argument_group("scripted model")
    m.add_argument("--unparsable-rate", type=float, default=0.1)
    m.add_argument("--no-verdict-rate", type=float, default=0.0)
    m.add_argument("--default-accuracy", type=float, default=0.75)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    plan = FaultPlan(
        seed=args.seed,
        rate_limit_every=args.rate_limit_every,
        rate_limit_p=args.rate_limit_p,
        retry_after_s=args.retry_after,
        server_error_every=args.server_error_every,
        server_error_p=args.server_error_p,
        server_error_status=args.server_error_status,
        timeout_every=args.timeout_every,
        timeout_p=args.timeout_p,
        timeout_sleep_s=args.timeout_sleep,
        malformed_every=args.malformed_every,
        malformed_p=args.malformed_p,
        fail_first=args.fail_first,
        fail_first_status=args.fail_first_status,
        routes=frozenset(args.fault_routes.split(",")) if args.fault_routes else None,
    )
    model = ScriptedModel(
        unparsable_rate=args.unparsable_rate,
        no_verdict_rate=args.no_verdict_rate,
        default_accuracy=args.default_accuracy,
    )
    provider = FakeProvider(
        routes=args.routes,
        latency_s=args.latency,
        faults=plan,
        port=args.port,
        state_dir=args.state_dir,
        model=model,
        api_key=args.api_key,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with provider:
        print(
            f"fake provider serving at {provider.url}  (base_url "
            f"{provider.url}/v1); Ctrl-C to stop",
            flush=True,
        )
        if args.ready_file is not None:
            args.ready_file.write_text(provider.url + "\n", encoding="utf-8")
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        provider.persist()
    print(f"served {provider.requests_total} requests: {dict(provider.counter)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
