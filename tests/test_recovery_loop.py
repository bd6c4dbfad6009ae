"""The periodic recovery loop: production schedules it at start (every
RECOVERY_INTERVAL_SECONDS, first pass at once); the in-process test app turns it
off (SATMACHINE_RECOVERY_LOOP=off, see lnbits_sandbox.py) so that a pass runs
only when a test calls one. The crash tests (separate LNbits processes) rely on
the real loop's start-up pass."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")

LOOP_TASK = "ext_satmachineadmin_recovery"


async def test_the_test_app_runs_no_recovery_loop(env):
    from lnbits.task_manager import task_manager

    assert task_manager.get_task(LOOP_TASK) is None
    # The invoice listener is on as in production.
    assert task_manager.get_task("ext_satmachineadmin_invoice_listener")


async def test_start_schedules_the_loop_unless_switched_off(env, monkeypatch):
    """Production (the switch unset, or anything but "off"): the listener and
    the loop, every 60 s. "off": the listener only."""
    import satmachineadmin
    from lnbits.task_manager import task_manager
    from satmachineadmin import tasks

    scheduled: list[dict] = []

    def fake_permanent_task(func, **kw):
        scheduled.append({"func": func, **kw})
        return object()

    monkeypatch.setattr(
        task_manager, "register_invoice_listener", lambda func, name: "listener"
    )
    monkeypatch.setattr(task_manager, "create_permanent_task", fake_permanent_task)
    monkeypatch.setitem(tasks.listener_status, "started_at", None)
    monkeypatch.setattr(satmachineadmin, "scheduled_tasks", [])

    for value in (None, "", "on"):
        if value is None:
            monkeypatch.delenv("SATMACHINE_RECOVERY_LOOP", raising=False)
        else:
            monkeypatch.setenv("SATMACHINE_RECOVERY_LOOP", value)
        scheduled.clear()
        satmachineadmin.scheduled_tasks.clear()
        satmachineadmin.satmachineadmin_start()
        assert scheduled == [
            {"func": tasks.recovery_loop, "name": LOOP_TASK, "interval": 60}
        ], value
        assert len(satmachineadmin.scheduled_tasks) == 2
    assert tasks.RECOVERY_INTERVAL_SECONDS == 60

    for value in ("off", " OFF "):
        monkeypatch.setenv("SATMACHINE_RECOVERY_LOOP", value)
        scheduled.clear()
        satmachineadmin.scheduled_tasks.clear()
        satmachineadmin.satmachineadmin_start()
        assert scheduled == []
        assert satmachineadmin.scheduled_tasks == ["listener"]


async def test_the_scheduled_loop_passes_at_start_and_every_interval(env, monkeypatch):
    """The real task manager and the real loop, with a short interval and a
    counting pass: a first pass at once, then one per interval; an exception
    in a pass is recorded and the loop goes on."""
    import satmachineadmin
    from lnbits.task_manager import task_manager
    from satmachineadmin import tasks

    passes: list[float] = []
    loop = asyncio.get_running_loop()

    async def counting_pass() -> dict:
        passes.append(loop.time())
        if len(passes) == 2:
            raise RuntimeError("pass two fails")
        return {}

    monkeypatch.delenv("SATMACHINE_RECOVERY_LOOP", raising=False)
    monkeypatch.setattr(satmachineadmin, "RECOVERY_INTERVAL_SECONDS", 0.2)
    monkeypatch.setattr(tasks, "run_recovery", counting_pass)
    # Only the loop: the session's invoice listener stays as it is.
    monkeypatch.setattr(
        task_manager, "register_invoice_listener", lambda func, name: None
    )
    monkeypatch.setitem(tasks.listener_status, "started_at", None)
    monkeypatch.setitem(tasks.recovery_status, "last_error", None)
    # The start-up wait for LNbits' pending check: its own test below.
    monkeypatch.setitem(tasks.startup_status, "waited", True)
    monkeypatch.setattr(satmachineadmin, "scheduled_tasks", [])
    started = loop.time()
    satmachineadmin.satmachineadmin_start()
    loop_task = task_manager.get_task(LOOP_TASK)
    try:
        assert loop_task is not None
        for _ in range(100):
            if len(passes) >= 3:
                break
            await asyncio.sleep(0.05)
        assert len(passes) >= 3, passes
        assert passes[0] - started < 0.2  # at start, not after an interval
        assert passes[1] - passes[0] >= 0.19
        assert tasks.recovery_status["last_error"] == "pass two fails"
    finally:
        if loop_task is not None:
            task_manager.cancel_task(loop_task)
    assert task_manager.get_task(LOOP_TASK) is None


async def test_the_first_pass_waits_for_lnbits_start_up_pending_check(env, monkeypatch):
    """LNbits' pending check lists every pending invoice at start-up and writes
    each listed row back later (an invoice paid in between would lose its
    credit): the first pass pays only once that check is running, plus a
    moment for its listing; once per process. Bounded: an LNbits whose task
    has another name delays the first pass by STARTUP_WAIT_SECONDS at most."""
    from lnbits.task_manager import task_manager
    from satmachineadmin import tasks

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(tasks, "AFTER_PENDING_CHECK_STARTED_SECONDS", 0.3)
    monkeypatch.setattr(tasks, "STARTUP_WAIT_SECONDS", 5)
    # The test app's LNbits runs its check like production.
    assert task_manager.get_task(tasks.LNBITS_PENDING_CHECK_TASK)
    monkeypatch.setitem(tasks.startup_status, "waited", False)
    started = loop.time()
    await tasks.wait_for_lnbits_pending_check()
    assert 0.3 <= loop.time() - started < 5  # found: not the bound
    started = loop.time()
    await tasks.wait_for_lnbits_pending_check()  # once per process
    assert loop.time() - started < 0.3

    monkeypatch.setattr(tasks, "LNBITS_PENDING_CHECK_TASK", "renamed_by_lnbits")
    monkeypatch.setattr(tasks, "STARTUP_WAIT_SECONDS", 0.5)
    monkeypatch.setitem(tasks.startup_status, "waited", False)
    started = loop.time()
    await tasks.wait_for_lnbits_pending_check()
    assert 0.8 <= loop.time() - started < 30
