"""Typed errors. Every message says what happened and what to do about it.

The scheduler decides on retries from the *type* alone: RateLimitError and TransientProviderError
are retried, everything else is not. A `fatal` error (a refused key, a wrong setting, a model the
server does not have) stops the whole stage at its first occurrence: every other request would
fail the same way, and each would be paid for where the provider bills failures. Backends
translate their SDK's exceptions into these so the core never has to know a provider's exception
hierarchy (and never mistakes a transport failure for a model that wrote something unparsable).
"""

from __future__ import annotations


class SteError(Exception):
    """Base class of every error ste raises on purpose."""

    retryable: bool = False
    #: every other request would fail the same way: stop the stage at the first one
    fatal: bool = False


class ConfigurationError(SteError):
    """A config file, option or argument is wrong. The message names the key and what is allowed."""

    fatal = True


class DataFileError(ConfigurationError):
    """A data file (instructions, pairs, judgements, a run's JSONL) cannot be read. The message
    names the file and, for a bad row, its line: `path:line: reason`."""


class MissingDependencyError(ConfigurationError):
    """A backend's optional dependencies are not installed."""

    def __init__(self, backend: str, extra: str, missing: list[str] | tuple[str, ...]) -> None:
        self.backend, self.extra, self.missing = backend, extra, tuple(missing)
        super().__init__(
            f"The '{backend}' backend needs {', '.join(missing)}, which is not installed. "
            f"Install it with: pip install 'self-taught-evaluators[{extra}]'"
        )


class UnknownBackendError(ConfigurationError):
    pass


class ProviderError(SteError):
    """A call to a model provider failed. `provider` names the backend, `status` the HTTP code."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.provider, self.status, self.request_id = provider, status, request_id
        prefix = f"[{provider}{' ' + str(status) if status else ''}] " if provider else ""
        super().__init__(prefix + message)


class AuthenticationError(ProviderError):
    """401/403: the key is missing, wrong, or lacks access. Not retried."""

    fatal = True


class RateLimitError(ProviderError):
    """429: slow down. `retry_after` (seconds) is the provider's Retry-After, if it sent one."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class TransientProviderError(ProviderError):
    """5xx, timeouts, dropped connections, malformed bodies: worth retrying with backoff."""

    retryable = True


class PermanentProviderError(ProviderError):
    """4xx other than auth/rate limit: the request itself is wrong. Not retried.

    A 404 is fatal: what is not there is the model (or the endpoint serving it), for every
    request alike."""

    def __init__(self, message: str, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(message, **kwargs)
        self.fatal = self.status == 404


class FineTuneFailed(SteError):
    """A fine-tune job ended in error or was cancelled. Carries the provider's own message."""

    def __init__(self, job_id: str, message: str, *, provider: str | None = None) -> None:
        self.job_id, self.provider_message = job_id, message
        where = f" on {provider}" if provider else ""
        super().__init__(
            f"Fine-tune job {job_id}{where} failed: {message}. The run's state is saved; fix the "
            f"cause and re-run the same command to resume from this iteration."
        )


class TooManyFailures(SteError):
    """More than `limits.max_failure_share` of a stage's requests failed for good (at least 20 of
    them): the stage stops with the first error instead of writing a result made of failures."""


class EvaluationFailed(SteError):
    """Too many items of a judge's evaluation could not be scored (failed requests, missing
    judgements): no accuracy or paired test is computed, and the stage fails so that a re-run
    retries it. Raised by `ste_core.evaluation.headline.require_headline`."""


class BudgetExceeded(SteError):
    """The next stage would go over `budget.max_cost_usd` or `budget.max_requests`."""
