"""Orphan resolution: what happens to sats no tracked client balance covered.

The operator decides once per orphan (a `reconciliations` row); the decision
runs as a state machine, like a settlement's:

    open ──claim(action, target)──> resolving ──(action done)──> resolved
      ^                                 │
      └──── send_to_wallet failed ──────┘

    operator_funds       resolving ──────────────────────────────> resolved
    send_to_wallet       resolving ──invoice stored──paid────────> resolved
                         resolving ──transfer failed──> open (invoice abandoned)
    attribute_to_client  resolving ──deposit + payout recorded (one
                         transaction)──payout paid──> resolved;
                         a failed payout stays resolving with the error and is
                         retried (recovery pass, or the operator);
                         the operator may give up on that unpaid payout
                         (POST /payouts/{id}/cancel): payout and deposit
                         cancelled, orphan open again (one transaction)

Rules that keep money from moving twice or going to the wrong place:

* Every step runs under the money lock and starts by re-reading the row; what
  it writes is a compare-and-set on the state it read (status, and the stored
  invoice or attribution), so a stale run (a second recovery pass, an API call
  racing a pass, a run resumed after a crash) changes nothing.
* `resolved` is final: nothing writes over it.
* A claim discards any invoice a failed earlier attempt stored, after making it
  unpayable in LNbits, so changing the target never pays the old one. A transfer
  failure abandons its invoice before reopening the orphan for the same reason.
* The attribution's deposit and payout are written in the same transaction as
  the compare-and-set that records them on the orphan (`deposit_id IS NULL`),
  so they exist once, or not at all, whatever runs it and however often.
"""

from __future__ import annotations

from lnbits.core.crud import get_wallet
from lnbits.helpers import urlsafe_short_hash
from loguru import logger

from .crud import (
    add_audit,
    compare_and_set,
    get_client,
    get_config,
    get_payment,
    get_reconciliation,
    get_reconciliation_by_payout,
    get_reconciliation_ids_by_status,
    get_settlement,
    get_settlement_payouts,
    transaction,
)
from .faults import crash_point
from .locks import money_lock
from .machines import receiving_wallet_id, source_wallet_ids
from .messages import Message, MessageError, localized
from .models import (
    ClientStatus,
    DcaDeposit,
    DcaPayment,
    DepositStatus,
    PayoutStatus,
    Reconciliation,
    ReconciliationStatus,
    ResolutionAction,
    Settlement,
    stored_message,
    utc_now,
)
from .transaction_processor import (
    ProcessingError,
    _pay_payout,
    abandon_invoice,
    transfer,
)

OPEN = ReconciliationStatus.open.value
RESOLVING = ReconciliationStatus.resolving.value
RESOLVED = ReconciliationStatus.resolved.value
TABLE = "reconciliations"


async def resolve_reconciliation(
    reconciliation_id: str,
    action: ResolutionAction,
    actor: str | None,
    wallet_id: str | None = None,
    client_id: str | None = None,
    note: str | None = None,
) -> Reconciliation:
    """The operator's decision for an open orphan, carried out at once. Raises
    LookupError (no such orphan), ValueError (bad target) or ProcessingError
    (not open, or the transfer failed: the orphan is open again)."""
    async with money_lock():
        rec = await get_reconciliation(reconciliation_id)
        if not rec:
            raise LookupError("reconciliation not found")
        if rec.status != OPEN:
            raise ProcessingError("conflict.reconciliation_already", status=rec.status)
        settlement = await get_settlement(rec.settlement_id)
        if not settlement:
            raise LookupError("settlement not found")
        target_wallet, target_client = await _target(
            action, settlement, rec, wallet_id, client_id
        )
        if await abandon_invoice(
            rec.payment_hash,
            settlement.wallet_id,
            rec.orphan_sats,
            {"reconciliation_id": rec.id},
        ):
            # An earlier transfer did go through after all: that is the
            # resolution that happened.
            await compare_and_set(
                TABLE,
                rec.id,
                {"status": OPEN, "payment_hash": rec.payment_hash},
                {
                    "status": RESOLVED,
                    "resolution": ResolutionAction.send_to_wallet.value,
                    "resolved_at": utc_now(),
                    "error": None,
                },
            )
            raise ProcessingError("conflict.orphan_already_sent")
        claimed = await compare_and_set(
            TABLE,
            rec.id,
            {"status": OPEN, "payment_hash": rec.payment_hash},
            {
                "status": RESOLVING,
                "resolution": action.value,
                "target_wallet_id": target_wallet,
                "target_client_id": target_client,
                "note": note,
                "resolved_by": actor,
                "bolt11": None,
                "payment_hash": None,
                "deposit_id": None,
                "payout_id": None,
                "error": None,
            },
        )
        if not claimed:
            raise ProcessingError("conflict.reconciliation_changed")
        crash_point("resolution_claimed")
        await add_audit(
            "reconciliation",
            rec.id,
            f"resolve:{action.value}",
            actor,
            {"wallet_id": wallet_id, "client_id": client_id, "note": note},
        )
        resolved = await _advance(rec.id)
        if resolved.status != RESOLVED:
            if resolved.error:  # the recorded error, in the reader's language
                raise ProcessingError(
                    "conflict.recorded",
                    error=localized(resolved.error, resolved.error_msg),
                )
            raise ProcessingError("conflict.resolution_status", status=resolved.status)
        return resolved


async def _target(
    action: ResolutionAction,
    settlement: Settlement,
    rec: Reconciliation,
    wallet_id: str | None,
    client_id: str | None,
) -> tuple[str | None, str | None]:
    """Where the orphan goes: (wallet, client), checked before anything moves."""
    if action == ResolutionAction.send_to_wallet:
        wallet = await get_wallet(wallet_id) if wallet_id else None
        if not wallet_id or not wallet or wallet.deleted:
            # A deleted wallet still answers get_wallet: the sats would go
            # where nobody can spend them.
            raise MessageError("orphan.wallet_required")
        # LNbits' share of a wallet receives into that wallet: a share of the
        # source wallet would "receive" the orphan where it already is.
        if settlement.wallet_id in (wallet_id, receiving_wallet_id(wallet)):
            raise MessageError("orphan.already_in_source")
        return wallet_id, None
    if action == ResolutionAction.attribute_to_client:
        client = await get_client(client_id) if client_id else None
        if not client:
            raise MessageError("orphan.client_required")
        if client.status != ClientStatus.active.value:
            # An inactive client gets no splits; crediting them a deposit they
            # cannot be paid against would freeze it.
            raise MessageError(
                "orphan.client_inactive",
                username=client.username,
                status=client.status,
            )
        if client.wallet_id in await source_wallet_ids(await get_config()):
            # Its deposit and payout would be recorded while the sats only
            # move between the operator's wallets (the payout is refused).
            raise MessageError(
                "orphan.client_wallet_is_source", username=client.username
            )
        wallet = await get_wallet(client.wallet_id)
        if not wallet or wallet.deleted:
            # The attribution's payout could never be paid: it would stay
            # resolving forever.
            raise MessageError("orphan.client_wallet_gone", username=client.username)
        return client.wallet_id, client.id
    return None, None


async def _advance(reconciliation_id: str) -> Reconciliation:
    """Take a resolving orphan as far as it can go. Caller holds the lock."""
    rec = await get_reconciliation(reconciliation_id)
    if not rec:
        raise LookupError("reconciliation not found")
    if rec.status != RESOLVING:
        return rec
    settlement = await get_settlement(rec.settlement_id)
    if not settlement:
        raise LookupError("settlement not found")
    action = ResolutionAction(rec.resolution)
    if action == ResolutionAction.operator_funds:
        await _mark_resolved(rec)
    elif action == ResolutionAction.send_to_wallet:
        await _send(rec, settlement)
    else:
        await _attribute(rec, settlement)
    current = await get_reconciliation(reconciliation_id)
    assert current
    return current


async def _mark_resolved(rec: Reconciliation) -> bool:
    return await compare_and_set(
        TABLE,
        rec.id,
        {"status": RESOLVING, "resolution": rec.resolution},
        {"status": RESOLVED, "resolved_at": utc_now(), "error": None},
    )


async def _send(rec: Reconciliation, settlement: Settlement) -> None:
    assert rec.target_wallet_id

    async def remember(bolt11: str, payment_hash: str, replacing: str | None) -> bool:
        # None: no invoice hash yet, NULL (or empty, from other software).
        for old in (replacing,) if replacing else (None, ""):
            if await compare_and_set(
                TABLE,
                rec.id,
                {
                    "status": RESOLVING,
                    "target_wallet_id": rec.target_wallet_id,
                    "payment_hash": old,
                },
                {"bolt11": bolt11, "payment_hash": payment_hash},
            ):
                return True
        return False

    result = await transfer(
        source_wallet_id=settlement.wallet_id,
        target_wallet_id=rec.target_wallet_id,
        sats=rec.orphan_sats,
        memo=f"ATM orphan funds: {rec.orphan_sats:,} sats ({settlement.id})",
        extra={
            "settlement_id": settlement.id,
            "reconciliation_id": rec.id,
            "kind": "orphan",
        },
        stored_bolt11=rec.bolt11,
        stored_hash=rec.payment_hash,
        remember=remember,
    )
    if result.contended:
        return
    if result.ok:
        await compare_and_set(
            TABLE,
            rec.id,
            {"status": RESOLVING, "payment_hash": result.payment_hash},
            {"status": RESOLVED, "resolved_at": utc_now(), "error": None},
        )
        return
    # Failed: the invoice (if one was stored) is made unpayable first, then the
    # orphan reopens for the operator, only if it is still this attempt.
    if await abandon_invoice(
        result.payment_hash,
        settlement.wallet_id,
        rec.orphan_sats,
        {"reconciliation_id": rec.id},
    ):
        await compare_and_set(
            TABLE,
            rec.id,
            {"status": RESOLVING, "payment_hash": result.payment_hash},
            {"status": RESOLVED, "resolved_at": utc_now(), "error": None},
        )
        return
    crash_point("orphan_transfer_failed")
    await compare_and_set(
        TABLE,
        rec.id,
        {"status": RESOLVING, "payment_hash": result.payment_hash},
        {
            "status": OPEN,
            "resolution": None,
            "bolt11": None,
            "payment_hash": None,
            "error": Message("orphan.transfer_failed", {"error": result.error}),
        },
    )


async def _attribute(rec: Reconciliation, settlement: Settlement) -> None:
    """The orphan was a client's untracked cash: a confirmed deposit of the
    orphan fiat for that client, and one payout of the orphan sats against it,
    so the client's balance is unchanged and every sat they got is one
    confirmed `dca_payments` row."""
    assert rec.target_client_id
    if not rec.deposit_id:
        await _record_attribution(rec, settlement)
        crash_point("attribution_recorded")
        fresh = await get_reconciliation(rec.id)
        if not fresh or fresh.status != RESOLVING or not fresh.deposit_id:
            return
        rec = fresh
    payout = await _attribution_payout(rec)
    if payout is None:
        await compare_and_set(
            TABLE,
            rec.id,
            {"status": RESOLVING},
            {"error": Message("orphan.payout_missing")},
        )
        return
    if payout.status != PayoutStatus.confirmed.value:
        if not await _pay_payout(settlement, payout):
            current = await get_payment(payout.id)
            reason = (
                stored_message(current.error, current.error_msg)
                if current and current.error
                else Message("orphan.payment_failed")
            )
            await compare_and_set(
                TABLE,
                rec.id,
                {"status": RESOLVING, "deposit_id": rec.deposit_id},
                {"error": Message("orphan.client_payment_failed", {"error": reason})},
            )
            return
    await _mark_resolved(rec)


async def _record_attribution(rec: Reconciliation, settlement: Settlement) -> None:
    now = utc_now()
    deposit_id, payout_id = urlsafe_short_hash(), urlsafe_short_hash()
    assert rec.target_client_id
    async with transaction() as tx:
        recorded = await compare_and_set(
            TABLE,
            rec.id,
            {
                "status": RESOLVING,
                "target_client_id": rec.target_client_id,
                "deposit_id": None,
            },
            {"deposit_id": deposit_id, "payout_id": payout_id},
            tx=tx,
        )
        if not recorded:
            return  # another run recorded it (or the row moved on)
        await tx.insert(
            "satoshimachine.dca_deposits",
            DcaDeposit(
                id=deposit_id,
                client_id=rec.target_client_id,
                amount=rec.orphan_fiat,
                currency=rec.fiat_code,
                status=DepositStatus.confirmed.value,
                notes=f"orphan funds of settlement {settlement.id}",
                created_at=now,
                confirmed_at=now,
            ),
        )
        await tx.insert(
            "satoshimachine.dca_payments",
            DcaPayment(
                id=payout_id,
                client_id=rec.target_client_id,
                amount_sats=rec.orphan_sats,
                amount_fiat=rec.orphan_fiat,
                currency=rec.fiat_code,
                exchange_rate=rec.exchange_rate,
                transaction_type="orphan",
                lamassu_transaction_id=settlement.lamassu_transaction_id,
                status=PayoutStatus.pending.value,
                created_at=now,
                transaction_time=settlement.cash_out_time or settlement.paid_at,
                settlement_id=settlement.id,
                updated_at=now,
            ),
        )


async def _attribution_payout(rec: Reconciliation) -> DcaPayment | None:
    if rec.payout_id:
        return await get_payment(rec.payout_id)
    # Attributions recorded before m008 kept no payout id.
    payouts = await get_settlement_payouts(rec.settlement_id)
    return next(
        (
            p
            for p in payouts
            if p.transaction_type == "orphan"
            and p.client_id == rec.target_client_id
            and p.status != PayoutStatus.cancelled.value
        ),
        None,
    )


async def abandon_attribution(payout: DcaPayment, reason: str) -> Reconciliation:
    """Give up on an attribution whose payout can never be paid (the client's
    wallet went after the attribution was recorded). Caller holds the money
    lock and has made the payout's invoice unpayable (`abandon_invoice`).

    The payout and the attribution's deposit are cancelled and the orphan is
    open again, in one transaction, each write a compare-and-set on what was
    read: the client's balance is what it was before the attribution (the
    deposit and its payout cancel out), and the orphan's sats, still in the
    source wallet, wait for another decision. Raises ProcessingError when the
    payout is not an unpaid attribution of a resolving orphan."""
    rec = await get_reconciliation_by_payout(payout)
    if (
        not rec
        or rec.status != RESOLVING
        or rec.resolution != ResolutionAction.attribute_to_client.value
    ):
        raise ProcessingError("conflict.orphan_payout_unattributed")
    async with transaction() as tx:
        payout_cancelled = await compare_and_set(
            "dca_payments",
            payout.id,
            {"status": payout.status, "payment_hash": payout.payment_hash},
            {
                "status": PayoutStatus.cancelled.value,
                "error": Message("payout.cancelled", {"reason": reason}),
            },
            tx=tx,
        )
        deposit_cancelled = True
        if rec.deposit_id is not None:
            # dca_deposits has no updated_at (the client extension's table), so
            # not compare_and_set; the same check by hand.
            result = await tx.execute(
                "UPDATE satoshimachine.dca_deposits SET status = :cancelled, "
                "notes = :notes WHERE id = :id AND status = :confirmed",
                {
                    "cancelled": DepositStatus.cancelled.value,
                    "confirmed": DepositStatus.confirmed.value,
                    "notes": (
                        f"orphan funds of settlement {rec.settlement_id} "
                        f"(attribution abandoned: {reason})"
                    )[:500],
                    "id": rec.deposit_id,
                },
            )
            deposit_cancelled = result.rowcount == 1
        reopened = await compare_and_set(
            TABLE,
            rec.id,
            {
                "status": RESOLVING,
                "deposit_id": rec.deposit_id,
                "payout_id": rec.payout_id,
            },
            {
                "status": OPEN,
                "resolution": None,
                "target_wallet_id": None,
                "target_client_id": None,
                "deposit_id": None,
                "payout_id": None,
                "bolt11": None,
                "payment_hash": None,
                "resolved_by": None,
                "error": Message("orphan.attribution_abandoned", {"reason": reason}),
            },
            tx=tx,
        )
        if not (payout_cancelled and deposit_cancelled and reopened):
            # Raising rolls the transaction back: nothing changed.
            raise ProcessingError("conflict.attribution_changed")
    current = await get_reconciliation(rec.id)
    assert current
    return current


async def resume_resolutions() -> int:
    """Carry on every resolution left `resolving` (a crash, a failed payment).
    Each is re-read under the lock, so overlapping passes never repeat work."""
    done = 0
    for rec_id in await get_reconciliation_ids_by_status(RESOLVING):
        try:
            async with money_lock():
                rec = await _advance(rec_id)
            done += rec.status == RESOLVED
        except Exception as exc:
            logger.warning(f"satmachineadmin: resolution {rec_id}: {exc}")
    return done
