"""Upgrading from the old extension never re-pays its past.

Two rules, both about money the old extension already handled:

1. **The upgrade line.** `m009_upgrade_line` records when this extension first
   ran on the database (one row in `satoshimachine.upgrade_line`). A payment
   into the source wallet from before that moment was the old extension's to
   split; the recovery scan, which looks back 30 days on its first run, would
   otherwise split it again. Such a payment is recorded with the status
   `before_upgrade` and nothing in the processing or recovery path advances
   it. The operator sees them in a list and, one by one, either processes one
   (it becomes `pending` and normal processing takes over) or dismisses it.

2. **Old Lamassu ids are never split again.** A cash-out whose Lamassu
   transaction id is in the old extension's tables (`lamassu_transactions`, or
   `dca_payments` rows without a settlement) was split by the old extension.
   When a settlement's cash-out data names such an id, however it arrived (the
   Lamassu database, or typed in by the operator), the settlement is dismissed
   with the reason before anything is planned: not even the operator's
   "process" can split it again.
"""

from __future__ import annotations

from datetime import datetime

from loguru import logger
from pydantic import BaseModel

from .crud import add_audit, db, get_settlement, get_settlements, update_settlement
from .locks import money_lock
from .messages import Message
from .models import Settlement, SettlementStatus, moment_utc, utc_now

S = "satoshimachine"
LINE_ID = "line"
BEFORE_UPGRADE = SettlementStatus.before_upgrade.value


class UpgradeLineView(BaseModel):
    """The line, and the settlements paid before it that wait for the operator."""

    first_run_at: datetime
    data: list[Settlement]
    total: int


# ------------------------------------------------------------------ the line


async def get_first_run_at() -> datetime:
    """When this extension first ran here. Set by m009; should the row be
    missing, the first call sets it to now (so the line always exists)."""
    row = await db.fetchone(
        f"SELECT first_run_at FROM {S}.upgrade_line WHERE id = :id", {"id": LINE_ID}
    )
    if row is None:
        await db.execute(
            f"INSERT INTO {S}.upgrade_line (id, first_run_at) "
            f"VALUES (:id, {db.timestamp_placeholder('at')}) "
            "ON CONFLICT (id) DO NOTHING",
            {"id": LINE_ID, "at": utc_now().replace(microsecond=0)},
        )
        row = await db.fetchone(
            f"SELECT first_run_at FROM {S}.upgrade_line WHERE id = :id",
            {"id": LINE_ID},
        )
    line = moment_utc(row["first_run_at"])  # SQLite may hand back epoch seconds
    if line is None:
        raise ValueError(f"upgrade line unreadable: {row['first_run_at']!r}")
    return line


async def mark_if_before_line(settlement: Settlement) -> None:
    """Called on a settlement about to be recorded: if it was paid before the
    line, it is recorded as `before_upgrade` and never split on its own."""
    line = await get_first_run_at()
    if settlement.paid_at >= line:
        return
    settlement.status = BEFORE_UPGRADE
    settlement.set_detail(Message("upgrade.before_line", {"line": line.isoformat()}))
    logger.info(
        f"satmachineadmin: payment {settlement.payment_hash} was paid before the "
        "upgrade line; recorded as before_upgrade, not split"
    )


# ------------------------------------------------ old Lamassu ids, never again


async def old_extension_record(lamassu_transaction_id: str | None) -> str | None:
    """Which of the old extension's tables already holds this Lamassu cash-out
    (None: neither). Lamassu ids are UUIDs: compared without case."""
    lid = (lamassu_transaction_id or "").strip().lower()
    if not lid:
        return None
    row = await db.fetchone(
        f"SELECT 'lamassu_transactions' AS found FROM {S}.lamassu_transactions "
        "WHERE LOWER(lamassu_transaction_id) = :lid "
        "UNION ALL "
        f"SELECT 'dca_payments' AS found FROM {S}.dca_payments "
        "WHERE LOWER(lamassu_transaction_id) = :lid AND settlement_id IS NULL",
        {"lid": lid},
    )
    return row["found"] if row else None


async def refuse_if_split_by_old_extension(settlement: Settlement) -> Settlement:
    """The gate before a split (see transaction_processor._advance): a
    settlement whose cash-out the old extension already split is dismissed,
    with the reason, instead of being split again. Call under the money lock."""
    if settlement.status not in (
        SettlementStatus.ready.value,
        SettlementStatus.flagged.value,
    ):
        return settlement
    found = await old_extension_record(settlement.lamassu_transaction_id)
    if not found:
        return settlement
    expected = settlement.status
    settlement.status = SettlementStatus.dismissed.value
    settlement.set_detail(
        Message(
            "upgrade.split_by_old",
            {"id": settlement.lamassu_transaction_id, "table": found},
        )
    )
    if not await update_settlement(settlement, expected_status=expected):
        fresh = await get_settlement(settlement.id)
        return fresh or settlement
    await add_audit(
        "settlement",
        settlement.id,
        "dismissed_old_lamassu_id",
        None,
        {"lamassu_transaction_id": settlement.lamassu_transaction_id, "in": found},
    )
    logger.warning(
        f"satmachineadmin: settlement {settlement.id}: {settlement.status_detail}"
    )
    return settlement


# --------------------------------------------------------- operator actions


async def get_upgrade_line_view(filters=None) -> UpgradeLineView:
    page = await get_settlements(filters, status=BEFORE_UPGRADE)
    return UpgradeLineView(
        first_run_at=await get_first_run_at(), data=page.data, total=page.total
    )


async def _take_before_upgrade(settlement_id: str) -> Settlement:
    from .transaction_processor import ProcessingError

    settlement = await get_settlement(settlement_id)
    if not settlement:
        raise LookupError("settlement not found")
    if settlement.status != BEFORE_UPGRADE:
        raise ProcessingError("conflict.not_before_upgrade", status=settlement.status)
    return settlement


async def process_before_upgrade(settlement_id: str, actor: str | None) -> Settlement:
    """The operator says the old extension never handled this payment: it
    becomes `pending` and is processed like any new settlement (a cash-out
    the old extension did split is still refused, see above)."""
    from .transaction_processor import ProcessingError, _advance

    async with money_lock():
        settlement = await _take_before_upgrade(settlement_id)
        settlement.status = SettlementStatus.pending.value
        settlement.set_detail(Message("upgrade.released"))
        settlement.reviewed_by = actor
        if not await update_settlement(settlement, expected_status=BEFORE_UPGRADE):
            raise ProcessingError("conflict.settlement_changed_retry")
        await add_audit(
            "settlement", settlement.id, "process_before_upgrade", actor, {}
        )
        return await _advance(settlement_id) or settlement


async def dismiss_before_upgrade(
    settlement_id: str, reason: str, actor: str | None
) -> Settlement:
    """The operator says the old extension handled it (or it is no ATM sale):
    it is never split."""
    from .transaction_processor import ProcessingError

    async with money_lock():
        settlement = await _take_before_upgrade(settlement_id)
        settlement.status = SettlementStatus.dismissed.value
        settlement.set_detail(Message("upgrade.dismissed", {"reason": reason}))
        settlement.reviewed_by = actor
        settlement.review_note = reason
        if not await update_settlement(settlement, expected_status=BEFORE_UPGRADE):
            raise ProcessingError("conflict.settlement_changed_retry")
        await add_audit(
            "settlement",
            settlement.id,
            "dismissed_before_upgrade",
            actor,
            {"reason": reason},
        )
        return settlement
