"""The cross-process money lock (locks.py) is a PostgreSQL session-level
advisory lock: it holds only while its session lives. A database that ends idle
sessions (`idle_session_timeout`) or a pooler in transaction mode loses it
without an error; the recovery loop checks for both and the dashboard says so
(GET /summary `lock_problem`, in the reader's language). On SQLite there is no
cross-process lock to lose."""

from __future__ import annotations

import os

import pytest

POSTGRES = os.environ.get("SATMACHINE_TEST_DB") == "postgres"


async def _database_setting(value: str | None) -> None:
    """idle_session_timeout for new sessions of the test database; the pooled
    sessions are closed so the next connection has it."""
    from satmachineadmin.crud import db

    name = (await db.fetchone("SELECT current_database() AS name"))["name"]
    if value is None:
        await db.execute(f'ALTER DATABASE "{name}" RESET idle_session_timeout')
    else:
        await db.execute(
            f"ALTER DATABASE \"{name}\" SET idle_session_timeout = '{value}'"
        )
    await db.engine.dispose()


@pytest.mark.skipif(not POSTGRES, reason="the advisory lock is PostgreSQL's")
async def test_a_database_that_ends_idle_sessions_is_reported(env):
    from satmachineadmin.locks import (
        check_lock_session,
        lock_status,
        refresh_lock_status,
    )

    assert await check_lock_session() is None  # the test database: trusted
    await _database_setting("10min")
    try:
        problem = await check_lock_session()
        assert problem and problem.code == "lock.idle_session_timeout"
        assert "10min" in problem.render("en")
        await refresh_lock_status()
        assert lock_status["problem"] == problem
    finally:
        await _database_setting(None)
    await refresh_lock_status()
    assert lock_status["problem"] is None


@pytest.mark.skipif(POSTGRES, reason="SQLite: one process per data folder")
async def test_sqlite_has_no_cross_process_lock_to_lose(env):
    from satmachineadmin.locks import check_lock_session

    assert await check_lock_session() is None


async def test_the_dashboard_summary_tells_the_lock_problem(env, monkeypatch):
    from satmachineadmin import locks
    from satmachineadmin.messages import Message

    response = await env.api("GET", "/summary")
    assert response.status_code == 200, response.text
    assert response.json()["lock_problem"] is None
    monkeypatch.setitem(locks.lock_status, "problem", Message("lock.session_changes"))
    spanish = {**env.auth, "Accept-Language": "es-GT,es;q=0.9"}
    response = await env.api("GET", "/summary", headers=spanish)
    assert "modo transacción" in response.json()["lock_problem"]
    response = await env.api("GET", "/summary")
    assert "transaction mode" in response.json()["lock_problem"]
