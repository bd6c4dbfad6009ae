"""Background work: the invoice listener and the recovery loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

from lnbits.core.crud import get_payments
from lnbits.core.models import Payment
from lnbits.db import Filters
from lnbits.task_manager import task_manager
from loguru import logger

from .alerts import note_lamassu, note_missed_payments, poke, run_check
from .crud import get_config, get_known_payment_hashes, set_config_timestamps
from .drift import refresh_lamassu_cash
from .faults import crash_point
from .lamassu_source import lamassu_session, poll_lamassu
from .locks import refresh_lock_status
from .machines import source_wallet_ids
from .models import moment_utc, utc_now
from .orphan_resolution import resume_resolutions
from .transaction_processor import (
    deliver_scheduled,
    look_up_waiting,
    process_settlement,
    record_payment,
    repair_half_paid_invoices,
    resume_payouts,
)

# How far back the first scan looks, and how much the scan overlaps the previous
# one (payments found settled late by LNbits' own polling keep their old time).
FIRST_SCAN_LOOKBACK = timedelta(days=30)
SCAN_OVERLAP = timedelta(days=2)
RECOVERY_INTERVAL_SECONDS = 60
# A payment that settled this shortly before the scan read it is recorded but
# not reported as missed by the listener: with two LNbits processes on one
# database, one process' scan can record a payment a moment before the
# listener of the process that received it does (a false alarm). A listener
# that really stopped still shows: most payments it misses are older than
# this when the next scan (every RECOVERY_INTERVAL_SECONDS) finds them.
MISSED_ALERT_GRACE = timedelta(seconds=20)
# Payments per query of the scan (LNbits serves at most 1000 per page).
SCAN_PAGE = 1000

listener_status: dict[str, object] = {"started_at": None, "last_payment_at": None}
# Payments the listener is handling now (recorded before the processing lock
# is taken): the tests wait for none.
in_flight: dict[str, int] = {"payments": 0}
recovery_status: dict[str, object] = {"last_run_at": None, "last_error": None}


async def on_invoice_paid(payment: Payment) -> None:
    """Called for every settled incoming payment on the instance. Never raises:
    an exception here would drop the payment and pause the listener; the
    recovery scan would still find it, but later."""
    in_flight["payments"] += 1
    try:
        crash_point("before_record")
        settlement = await record_payment(payment)
        if settlement:
            listener_status["last_payment_at"] = utc_now()
            await process_settlement(settlement.id)
            poke()  # after the work is committed; never raises
    except Exception as exc:
        logger.error(f"satmachineadmin: handling payment {payment.payment_hash}: {exc}")
    finally:
        in_flight["payments"] -= 1


class _OldestFirst(Filters):
    """LNbits' payment filters, oldest first with the checking id (the primary
    key) breaking ties, so paging neither skips nor repeats a payment."""

    def order_by(self) -> str:
        return f"{super().order_by()}, apipayments.checking_id asc"


async def _settled_incoming(wallet_id: str, since: int) -> AsyncIterator[list[Payment]]:
    """Every settled incoming payment of the wallet since `since`, a page at
    a time. LNbits' get_payments returns one page (10 rows unless told
    otherwise, never more than 1000), so it is asked until a page comes back
    empty. Pages are by creation time: a payment created before the scan and
    settling during it can shift a page by one row (that row is seen twice,
    and skipped as known, never missed); one settling after its page was read
    is found by the next scan, which overlaps this one by SCAN_OVERLAP."""
    offset = 0
    while True:
        page = await get_payments(
            wallet_id=wallet_id,
            incoming=True,
            complete=True,
            since=since,
            filters=_OldestFirst(
                sortby="time", direction="asc", limit=SCAN_PAGE, offset=offset
            ),
        )
        if not page:
            return
        yield page
        offset += len(page)


async def scan_source_wallet() -> int:
    """Find settled incoming payments of the source wallet that have no
    settlement yet (missed while down, or settled late) and record them."""
    config = await get_config()
    if not config:
        return 0
    # The configured source wallet and the machines' own (#14).
    wallets = sorted(await source_wallet_ids(config))
    if not wallets:
        return 0
    started = utc_now()
    since = (
        config.scan_checkpoint - SCAN_OVERLAP
        if config.scan_checkpoint
        else started - FIRST_SCAN_LOOKBACK
    )
    found = []
    missed = []  # found, and settled well before this scan
    for wallet_id in wallets:
        async for page in _settled_incoming(wallet_id, int(since.timestamp())):
            # One query for the page's known payments (most are: the scan
            # overlaps the last one), not a record attempt each.
            known = await get_known_payment_hashes([p.payment_hash for p in page])
            for payment in page:
                if payment.payment_hash in known:
                    continue
                settlement = await record_payment(payment)
                if not settlement:
                    continue
                found.append(settlement)
                # LNbits sets updated_at when the invoice is paid.
                settled = moment_utc(payment.updated_at) or started
                if settled <= started - MISSED_ALERT_GRACE:
                    missed.append(settlement)
    await set_config_timestamps(config.id, scan_checkpoint=started)
    if found:
        logger.info(
            f"satmachineadmin: recovery scan found {len(found)} new settlement(s)"
        )
    if missed:
        await note_missed_payments(missed)  # never raises
    return len(found)


async def poll_lamassu_if_configured() -> dict | None:
    """The parity poll of recent Lamassu cash-outs (which have a settlement in
    the source wallet and which do not). Never fails the recovery pass."""
    config = await get_config()
    if not config or not config.is_active or not config.lamassu_configured:
        return None
    try:
        report = await poll_lamassu(config)
        note_lamassu(True)
    except Exception as exc:
        report = {"error": str(exc)}
        logger.warning(f"satmachineadmin: Lamassu poll failed: {exc}")
        note_lamassu(False, str(exc))
    recovery_status["last_poll"] = report
    return report


async def deliver_due_fixed_payouts() -> int:
    """Fixed-mode payouts whose delivery slot has come (fixed_mode.py). Never
    fails the recovery pass."""
    try:
        return await deliver_scheduled()
    except Exception as exc:
        logger.error(f"satmachineadmin: fixed-mode delivery failed: {exc}")
        return 0


async def run_recovery(look_up_now: bool = False) -> dict:
    """One pass: scan, then advance every open settlement and resolution, then
    poll Lamassu (when configured) for cash-outs without a settlement."""
    started = time.monotonic()
    found = await scan_source_wallet()
    # Before anything is paid again: credits LNbits' pending check undid.
    try:
        await repair_half_paid_invoices()
    except Exception as exc:
        logger.error(f"satmachineadmin: repairing half-paid invoices: {exc}")
    # Money in flight first (interrupted payouts and resolutions), then the
    # lookups and the poll, which share one Lamassu connection for the pass.
    await resume_payouts()
    await resume_resolutions()
    await deliver_due_fixed_payouts()
    config = await get_config()
    async with lamassu_session(config):
        await look_up_waiting(config, ignore_back_off=look_up_now)
        poll = await poll_lamassu_if_configured()
        await refresh_lamassu_cash(config, force=look_up_now)  # never raises
    recovery_status["last_run_at"] = utc_now()
    recovery_status["last_error"] = None
    await run_check()  # never raises
    return {
        "new_settlements": found,
        "lamassu_poll": poll,
        "seconds": round(time.monotonic() - started, 3),
    }


# LNbits' pending-payment check (a core task, started after the extensions'
# tasks) lists every pending invoice at start-up and writes each listed row
# back later: an invoice of ours listed while pending and paid before that
# write loses its payment (see transfer()). The first pass pays after the
# listing; the wait is bounded, as another LNbits may name the task otherwise.
LNBITS_PENDING_CHECK_TASK = "check_pending_payments"
STARTUP_WAIT_SECONDS = 15.0
AFTER_PENDING_CHECK_STARTED_SECONDS = 1.0
startup_status: dict[str, bool] = {"waited": False}


async def wait_for_lnbits_pending_check() -> None:
    if startup_status["waited"]:
        return
    deadline = time.monotonic() + STARTUP_WAIT_SECONDS
    while (
        task_manager.get_task(LNBITS_PENDING_CHECK_TASK) is None
        and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.1)
    await asyncio.sleep(AFTER_PENDING_CHECK_STARTED_SECONDS)
    startup_status["waited"] = True


async def recovery_loop() -> None:
    """Run by the task manager every RECOVERY_INTERVAL_SECONDS (first run at
    start, which resumes anything a crash left half-done)."""
    try:
        await wait_for_lnbits_pending_check()
        await refresh_lock_status()  # never raises
        await run_recovery()
    except Exception as exc:
        recovery_status["last_error"] = str(exc)
        logger.error(f"satmachineadmin: recovery pass failed: {exc}")
