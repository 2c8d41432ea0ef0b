"""The parse pool: a job past its deadline costs its worker, never the event loop or the service.

Jobs that miss the deadline never finish (they loop for ever); no assertion is about how long
anything took.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.intake import core
from services.intake.app import IntakeHandler
from services.intake.parse_pool import ParsePool, ParseTimeout, TaskFailed, WorkerCrashed
from shared.runtime import Rejected
from shared.settings import Settings
from tests.support.adversarial import BY_NAME
from tests.support.intake_pipeline import NOW, ROUTES, runtime
from tests.support.pool_jobs import (
    allocate,
    die,
    double,
    fail_with_customer_text,
    my_pid,
    refuse,
    spin,
)

DEADLINE = 1.5


@pytest.fixture
async def pool() -> AsyncIterator[ParsePool]:
    started = ParsePool(1, deadline=DEADLINE, memory_mb=256, passthrough=(core.Unprocessable,))
    await started.start()
    yield started
    await started.close()


async def test_a_job_runs_in_a_worker_and_returns(pool: ParsePool) -> None:
    assert await pool.run(double, 21) == 42
    assert await pool.run(my_pid) in pool.pids()
    assert await pool.run(my_pid) != os.getpid()


async def test_a_job_past_its_deadline_is_killed_and_its_worker_replaced(pool: ParsePool) -> None:
    first = await pool.run(my_pid)
    with pytest.raises(ParseTimeout):
        await pool.run(spin)
    assert pool.timeouts == 1
    replacement = await pool.run(my_pid)  # waits for the new worker
    assert replacement != first
    assert await pool.run(double, 4) == 8


async def test_the_event_loop_runs_while_a_worker_spins(pool: ParsePool) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    with pytest.raises(ParseTimeout):
        await pool.run(spin)
    task.cancel()
    assert ticks > 100  # the heartbeat (and every other coroutine) kept running


async def test_refusals_pass_through_and_other_errors_name_only_their_type(
        pool: ParsePool) -> None:
    with pytest.raises(core.Unprocessable, match="too many parts"):
        await pool.run(refuse, "too many parts")
    with pytest.raises(TaskFailed) as caught:
        await pool.run(fail_with_customer_text, "4111 1111 1111 1111")
    assert caught.value.kind == "KeyError"
    assert "4111" not in str(caught.value)
    assert await pool.run(double, 1) == 2  # the worker survived


async def test_a_worker_that_dies_is_replaced(pool: ParsePool) -> None:
    with pytest.raises(WorkerCrashed):
        await pool.run(die)
    assert await pool.run(double, 5) == 10


async def test_a_job_over_the_memory_limit_fails_alone(pool: ParsePool) -> None:
    with pytest.raises(TaskFailed) as caught:
        await pool.run(allocate, 2_048)
    assert caught.value.kind == "MemoryError"
    assert await pool.run(allocate, 16) == 16 * 1024 * 1024


# --- the intake handler ----------------------------------------------------------------------
def handler_with(pool: ParsePool) -> IntakeHandler:
    return IntakeHandler(Settings(intake_parse_deadline_seconds=pool.deadline), pool=pool)


async def test_the_handler_rejects_a_record_that_misses_the_deadline_as_parse_timeout(
        pool: ParsePool) -> None:
    handler = handler_with(pool)
    with pytest.raises(Rejected, match=r"^parse_timeout: spin took longer than 1.5 s$"):
        await handler._run(True, spin)


async def test_the_handler_turns_any_failure_of_the_pure_path_into_a_clean_reason(
        pool: ParsePool, caplog: pytest.LogCaptureFixture) -> None:
    handler = handler_with(pool)
    with pytest.raises(Rejected, match=r"^parse_failed: fail_with_customer_text raised KeyError$"):
        await handler._run(True, fail_with_customer_text, "PIN 1234")
    with pytest.raises(Rejected, match=r"^parse_failed: fail_with_customer_text raised KeyError$"):
        await handler._run(False, fail_with_customer_text, "PIN 1234")  # inline, the same
    with pytest.raises(Rejected, match=r"^parse_memory: allocate raised MemoryError$"):
        await handler._run(True, allocate, 2_048)
    with pytest.raises(Rejected, match=r"^parse_failed: the worker died twice during die$"):
        await handler._run(True, die)
    assert "KeyError" in caplog.text and "PIN 1234" not in caplog.text  # the logs neither


async def test_a_record_refused_once_is_refused_again_without_parsing(
        pool: ParsePool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that failed is retried one record at a time: the poison record must not cost
    its deadline twice."""
    handler = handler_with(pool)
    adv = BY_NAME["email-multipart-1000-deep"]
    decoded = runtime()._decode(adv.record(), ROUTES[adv.topic])
    assert decoded is not None
    envelope, payload = decoded
    with pytest.raises(Rejected) as first:
        await handler.understand(envelope, payload, NOW)
    calls: list[Any] = []

    async def counting_run(*args: Any) -> Any:
        calls.append(args)
        raise AssertionError("parsed again")

    monkeypatch.setattr(pool, "run", counting_run)
    with pytest.raises(Rejected) as again:
        await handler.understand(envelope, payload, NOW)
    assert str(again.value) == str(first.value) and not calls

