"""The money lock: one holder at a time for everything that spends client
balances or moves the source wallet's sats (settlement processing, payout
retries, orphan resolutions, payout cancellations).

Two layers, because an operator may run more than one LNbits process on one
database (fail-over, a second worker):

* an asyncio lock, for the tasks of this process;
* on PostgreSQL, a session-level advisory lock held on a connection of its own
  for as long as the money lock is held, for every other process. PostgreSQL
  releases it when that session ends, so a process killed while holding it
  never blocks the others.

SQLite allows one writer per file and LNbits keeps one process per SQLite data
folder, so the asyncio lock is the whole lock there.

The compare-and-set writes inside (UNIQUE keys, status guards) stay: the lock
keeps two holders from doing the same work at once, the guards keep a stale
view from writing over a newer state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from loguru import logger
from sqlalchemy import text

from .crud import db
from .messages import Message

processing_lock = asyncio.Lock()

# pg_advisory_lock takes a bigint; this one is "satmachine" in ASCII, truncated.
ADVISORY_LOCK_KEY = 0x7361746D61636869


def _is_postgres() -> bool:
    return db.type != "SQLITE"


@asynccontextmanager
async def money_lock() -> AsyncIterator[None]:
    async with processing_lock:
        if not _is_postgres():
            yield
            return
        # Straight from the engine: Database.connect() holds a lock of its own
        # that every other query of this extension waits for.
        async with db.engine.connect() as conn:
            await conn.execute(
                text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
            await conn.commit()  # session-level: survives the commit
            try:
                yield
            finally:
                try:
                    await conn.execute(
                        text("SELECT pg_advisory_unlock(:key)"),
                        {"key": ADVISORY_LOCK_KEY},
                    )
                    await conn.commit()
                except BaseException:
                    # Never hand a session that may still hold the lock back to
                    # the pool: closing it is what releases the lock then.
                    await conn.invalidate()
                    raise


# What check_lock_session found (this process), served by GET /summary.
lock_status: dict[str, Message | None] = {"problem": None}


async def check_lock_session() -> Message | None:
    """Whether the cross-process lock can be trusted here. The advisory lock
    lives as long as its database session: behind a pooler in transaction mode
    (PgBouncer `pool_mode = transaction`) one client connection is served by
    different sessions, and with `idle_session_timeout` PostgreSQL ends the
    idle session holding it; either way it is lost without an error, and only
    the row guards would still keep two processes apart. Best effort: a
    pooler that happens to give back the same session is not seen."""
    if not _is_postgres():
        return None
    async with db.engine.connect() as conn:
        sessions = set()
        for _ in range(3):
            result = await conn.execute(text("SELECT pg_backend_pid()"))
            sessions.add(result.scalar())
            await conn.commit()
        result = await conn.execute(
            text("SELECT current_setting('idle_session_timeout', true)")
        )
        idle_timeout = result.scalar()
        await conn.commit()
    if len(sessions) > 1:
        return Message("lock.session_changes")
    if idle_timeout not in (None, "", "0"):
        return Message("lock.idle_session_timeout", {"timeout": idle_timeout})
    return None


async def refresh_lock_status() -> None:
    """check_lock_session for the recovery loop: logged when it changes,
    shown on the dashboard (GET /summary `lock_problem`). Never raises."""
    try:
        problem = await check_lock_session()
    except Exception as exc:
        logger.warning(f"satmachineadmin: checking the money lock's session: {exc}")
        return
    if problem and problem != lock_status["problem"]:
        logger.error(f"satmachineadmin: {problem.render('en')}")
    lock_status["problem"] = problem
