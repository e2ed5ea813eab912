"""Together fine-tune job states -> the core's JobStatus.

Together's states (SDK 3.x): pending, queued, running, compressing, uploading, cancel_requested,
cancelled, error, user_error, completed. `cancel_requested` is not terminal (the job may still
finish its current step), so it stays RUNNING until Together reports `cancelled`. An unknown
future state is treated as RUNNING (keep polling) rather than guessed terminal.
"""

from __future__ import annotations

from ste_core.records import JobStatus

STATE_MAP: dict[str, JobStatus] = {
    "pending": JobStatus.QUEUED,
    "queued": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "compressing": JobStatus.RUNNING,
    "uploading": JobStatus.RUNNING,
    "cancel_requested": JobStatus.RUNNING,
    "cancelled": JobStatus.CANCELLED,
    "error": JobStatus.FAILED,
    "user_error": JobStatus.FAILED,
    "completed": JobStatus.SUCCEEDED,
}


def job_status(provider_status: str | None) -> JobStatus:
    """The core status for a Together job status string (enum values or plain strings)."""
    value = getattr(provider_status, "value", provider_status)
    return STATE_MAP.get(str(value or "").lower(), JobStatus.RUNNING)


def is_failure(provider_status: str | None) -> bool:
    return job_status(provider_status) is JobStatus.FAILED
