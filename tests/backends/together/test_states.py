"""Together's fine-tune job states -> the core's JobStatus (ste_backends/together/states.py)."""

from __future__ import annotations

import pytest

from ste_backends.together.states import STATE_MAP, job_status
from ste_core.records import JobStatus


@pytest.mark.parametrize(
    ("provider", "status"),
    [
        ("pending", JobStatus.QUEUED),
        ("queued", JobStatus.QUEUED),
        ("running", JobStatus.RUNNING),
        ("compressing", JobStatus.RUNNING),
        ("uploading", JobStatus.RUNNING),
        ("cancel_requested", JobStatus.RUNNING),
        ("cancelled", JobStatus.CANCELLED),
        ("error", JobStatus.FAILED),
        ("user_error", JobStatus.FAILED),
        ("completed", JobStatus.SUCCEEDED),
    ],
)
def test_every_together_state_is_mapped(provider, status):
    assert job_status(provider) is status


def test_state_map_covers_the_sdk_enum_and_unknown_states_keep_polling():
    from together.lib.types.fine_tuning import FinetuneJobStatus

    assert {s.value for s in FinetuneJobStatus} == set(STATE_MAP)
    assert job_status(FinetuneJobStatus.STATUS_USER_ERROR) is JobStatus.FAILED  # enum values too
    assert job_status("some_future_state") is JobStatus.RUNNING
    assert not job_status("cancel_requested").terminal
