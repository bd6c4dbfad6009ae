"""The transaction processor: from an ATM settlement payment to client payouts.

Life of a settlement (statuses in models.SettlementStatus):

    pending ──lookup──> waiting_data / waiting_dispense / flagged ──> ready
    ready ──plan (one DB transaction)──> distributing ──payouts──> completed
                                                       ├────────> payout_failed
                                                       └────────> scheduled
    scheduled ──delivery slot (deliver_scheduled)──> completed / payout_failed

* The settlement row is keyed by the payment hash (UNIQUE), so the listener, a
  recovery scan and a duplicate notification all land on the same row.
* The plan (every payout row, the split and the orphan) is written in one
  transaction before any sat moves, from balances that exclude this
  settlement's own rows, so a crash either leaves no plan or the whole plan.
* Each payout stores its invoice before paying it. An internal invoice can be
  paid once only, so re-running a payout after a crash pays the same invoice,
  or finds it paid, and never pays twice.
* Everything that spends client balances runs under one lock, so two
  settlements never spend the same balance.
* Fixed-mode clients (#12) share the split capped at what is left of their
  daily limit; on a daily or N-times-a-day schedule their payouts wait
  (`deliver_after`, reserved) until a delivery slot releases them: the slot's
  key is taken once, then each payout is paid like any other (stored invoice
  first), so a slot runs once across crashes and nothing is paid early.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bolt11 import decode as decode_bolt11
from lnbits.core.crud import get_standalone_payment, get_wallet
from lnbits.core.crud.payments import (
    check_internal,
    is_internal_status_success,
)
from lnbits.core.db import db as core_db
from lnbits.core.models import Payment, PaymentState
from lnbits.core.services import create_invoice, pay_invoice
from lnbits.db import model_to_dict
from lnbits.helpers import urlsafe_short_hash
from loguru import logger
from sqlalchemy import text

from .allocation import (
    AllocationError,
    Distribution,
    PrincipalSplit,
    distribute,
    effective_commission,
    split_from_commission,
    split_from_ticker,
)
from .cashout import (
    CashOutData,
    CashOutSource,
    Lookup,
    LookupState,
    PaymentMetadataSource,
    error_of,
    manual_cash_out,
    payment_extra_of,
)
from .crud import (
    add_audit,
    claim_delivery_slot,
    compare_and_set,
    finish_delivery_slot,
    get_client,
    get_clients,
    get_config,
    get_due_delivery_times,
    get_flow_balances,
    get_paid_balances,
    get_payment,
    get_reconciliation_by_settlement,
    get_settlement,
    get_settlement_payouts,
    get_settlements_by_status,
    get_slot_payouts,
    get_unfinished_slots,
    insert_settlement_if_new,
    release_delivery_slot,
    set_payout_invoice,
    set_payout_invoices,
    set_payout_status,
    set_payout_statuses,
    settlement_wallet_ids,
    transaction,
    update_settlement,
)
from .faults import crash_point
from .fixed_mode import Schedule, fixed_day, slot_key
from .locks import money_lock, processing_lock
from .machines import (
    commission_payout_rows,
    get_commission_payouts,
    get_machine_by_device,
    machine_of_source_wallet,
    machine_seen,
    recipients_for,
    redirect_commission_payout,
    set_commission_invoice,
    set_commission_status,
    source_wallet_ids,
    update_commission_summary,
)
from .messages import Message, current_language
from .models import (
    CommissionPayout,
    DcaClient,
    DcaPayment,
    LamassuConfig,
    Machine,
    ManualCashOutData,
    PayoutStatus,
    Reconciliation,
    ReconciliationStatus,
    Settlement,
    SettlementStatus,
    TestTransactionData,
    as_utc,
    stored_message,
    stored_text,
    utc_now,
)
from .rate_check import rate_review_reason
from .upgrade_line import mark_if_before_line, refuse_if_split_by_old_extension

EXTENSION_TAG = "satmachineadmin"
ADMIN_CREDIT_MEMOS = {"Admin credit", "Admin debit"}
LOOKUP_STATUSES = (
    SettlementStatus.pending.value,
    SettlementStatus.waiting_data.value,
    SettlementStatus.waiting_dispense.value,
)
# Waiting for the operator: nothing looks these up by itself any more.
OPERATOR_STATUSES = (SettlementStatus.flagged.value, SettlementStatus.stale.value)
PAYOUT_STATUSES = (
    SettlementStatus.distributing.value,
    SettlementStatus.payout_failed.value,
    # Advancing one pays nothing early (_pay_all skips scheduled payouts); it
    # finishes one whose slot was delivered by a run that died before that.
    SettlementStatus.scheduled.value,
)


# Cash-out sources in the order they are asked. The Lamassu source is appended
# by lamassu_source at import, keeping this module free of database drivers.
cash_out_sources: list[CashOutSource] = [PaymentMetadataSource()]


class ProcessingError(Exception):
    """A request the current state does not allow (the API answers 409). Given
    a message code (messages.py, `conflict.*`): its text is in the language of
    the request being served, English outside one; `.message` keeps the code.
    Not a ValueError: callers tell it apart from bad input (400)."""

    def __init__(self, code: str, **params: Any) -> None:
        self.message = Message(code, params)
        super().__init__(self.message.render(current_language()))


# ------------------------------------------------------------------- recording


def is_settlement_candidate(payment: Payment, source_wallet_id: str | None) -> bool:
    """Incoming, settled, into the source wallet, and not something this
    extension or an admin caused."""
    if not source_wallet_id or payment.wallet_id != source_wallet_id:
        return False
    if payment.amount <= 0 or not payment.success:
        return False
    extra = payment.extra or {}
    if extra.get("tag") == EXTENSION_TAG or payment.tag == EXTENSION_TAG:
        return False
    if payment.memo in ADMIN_CREDIT_MEMOS and not extra:
        return False
    return True


async def record_payment(payment: Payment) -> Settlement | None:
    """Record an incoming payment as a settlement, once. Returns the new
    settlement, or None when it is not one or was recorded before."""
    extra = payment.extra or {}
    if extra.get("tag") == EXTENSION_TAG or payment.tag == EXTENSION_TAG:
        return None  # our own payouts: not even worth a config lookup
    config = await get_config()
    # The configured source wallet, or a machine's own (#14).
    is_source, device_id = await machine_of_source_wallet(payment.wallet_id, config)
    if not is_settlement_candidate(payment, payment.wallet_id if is_source else None):
        return None
    now = utc_now()
    settlement = Settlement(
        id=urlsafe_short_hash(),
        payment_hash=payment.payment_hash,
        wallet_id=payment.wallet_id,
        amount_sats=payment.amount // 1000,
        bolt11=payment.bolt11,
        memo=(payment.memo or "")[:500],
        paid_at=as_utc(payment.time),
        cash_out_data=json.dumps({"payment_extra": payment.extra or {}}, default=str),
        created_at=now,
        updated_at=now,
        # A wallet only one machine pays into names that machine at once.
        device_id=device_id,
    )
    await mark_if_before_line(settlement)  # paid before the upgrade line?
    if not await insert_settlement_if_new(settlement):
        return None
    crash_point("recorded")
    logger.info(
        f"satmachineadmin: settlement {settlement.id} recorded for "
        f"{settlement.amount_sats} sats ({payment.payment_hash})"
    )
    return settlement


# ------------------------------------------------------------------- processing


async def process_settlement(settlement_id: str) -> Settlement | None:
    """Take a settlement as far as it can go now. Safe to call any number of
    times, from anywhere: each step checks the stored state first."""
    async with money_lock():
        return await _advance(settlement_id)


async def _advance(settlement_id: str) -> Settlement | None:
    settlement = await get_settlement(settlement_id)
    if not settlement:
        return None
    config = await get_config()
    if settlement.status in LOOKUP_STATUSES:
        if not config:
            return settlement
        settlement = await _lookup(settlement, config)
        crash_point("looked_up")
    # Never split a cash-out the old extension already split (upgrade_line.py).
    settlement = await refuse_if_split_by_old_extension(settlement)
    if settlement.status == SettlementStatus.ready.value:
        settlement = await _plan(settlement, config)
        crash_point("planned")
    if settlement.status in PAYOUT_STATUSES:
        settlement = await _pay_all(settlement)
    return settlement


async def _lookup(settlement: Settlement, config: LamassuConfig) -> Settlement:
    extra = payment_extra_of(settlement)
    result: Lookup | None = None
    for source in cash_out_sources:
        try:
            result = await source.lookup(settlement, extra, config)
        except Exception as exc:  # a source being down must not lose the settlement
            logger.warning(f"satmachineadmin: {source.name} lookup failed: {exc}")
            result = Lookup(
                LookupState.waiting,
                Message(
                    "settlement.source_unavailable",
                    {"source": source.name, "error": error_of(exc)},
                ),
            )
            break
        if result is not None:
            break
    expected = settlement.status
    settlement.lookup_attempts += 1
    settlement.last_lookup_at = utc_now()
    if result is None:
        settlement.status = SettlementStatus.waiting_data.value
        settlement.set_detail(Message("settlement.no_cash_out_data"))
    elif result.state == LookupState.found and result.data:
        _apply_cash_out(settlement, result.data)
        await _check_price(settlement, config)
        await _check_machine(settlement, config)
    elif result.state == LookupState.waiting:
        settlement.status = SettlementStatus.waiting_dispense.value
        settlement.set_detail(result.detail)
    else:
        settlement.status = SettlementStatus.flagged.value
        settlement.set_detail(result.detail)
        logger.warning(
            f"satmachineadmin: settlement {settlement.id}: {settlement.status_detail}"
        )
    if await update_settlement(settlement, expected_status=expected):
        await machine_seen(settlement)
    return settlement


async def _check_price(settlement: Settlement, config: LamassuConfig | None) -> None:
    """Flag a settlement whose cash-out price nothing independent confirms
    (rate_check.py). Only a settlement about to be split is checked."""
    if settlement.status != SettlementStatus.ready.value:
        return
    reason = await rate_review_reason(settlement, config)
    if reason:
        settlement.status = SettlementStatus.flagged.value
        settlement.set_detail(reason)
        logger.warning(
            f"satmachineadmin: settlement {settlement.id}: {settlement.status_detail}"
        )


async def _check_machine(settlement: Settlement, config: LamassuConfig | None) -> None:
    """The wallet a payment arrived in is a fact; the machine its cash-out data
    names (bitSpire `machine_npub`, a Lamassu row's device id) is the ATM's
    claim, and it decides whose commission partners are paid. A payment into
    a wallet only one machine uses, whose data names another device, is
    flagged for the operator and stays attributed to the wallet's machine:
    accepting it credits that machine; entering the data by hand with another
    device id is the operator's decision (enter_cash_out does not check it).

    A device nobody listed is flagged the same way rather than attributed to
    the wallet's machine: the data is then wrong or another ATM pays into
    this machine's wallet, and neither should be settled silently (nothing is
    lost by waiting; the settlement waits in the source wallet).

    The configured source wallet (shared by the machines without their own)
    and a wallet several machines share name no machine: the data does."""
    _, own = await machine_of_source_wallet(settlement.wallet_id, config)
    if not own:
        return
    named = (settlement.device_id or "").strip()
    settlement.device_id = own  # the wallet's machine, whatever the data says
    if not named or named == own:
        return
    wallet_machine = await get_machine_by_device(own)
    named_machine = await get_machine_by_device(named)
    flag = Message(
        (
            "settlement.machine_claim_other"
            if named_machine
            else "settlement.machine_claim_unknown"
        ),
        {
            "wallet_machine": _machine_label(wallet_machine, own),
            "named_machine": _machine_label(named_machine, named),
        },
    )
    if settlement.status == SettlementStatus.flagged.value:
        # Flagged already (its data or its price): the operator sees both.
        other = stored_message(settlement.status_detail, settlement.status_detail_msg)
        flag = Message("settlement.flag_reasons", {"machine": flag, "other": other})
    settlement.status = SettlementStatus.flagged.value
    settlement.set_detail(flag)
    logger.warning(
        f"satmachineadmin: settlement {settlement.id}: {settlement.status_detail}"
    )


def _machine_label(machine: Machine | None, device_id: str) -> str:
    name = ((machine.name if machine else None) or "").strip()
    return f"{name} ({device_id})" if name else device_id


def _apply_cash_out(settlement: Settlement, data: CashOutData) -> None:
    settlement.data_source = data.source
    settlement.fiat_amount = data.fiat_amount
    settlement.fiat_code = data.fiat_code
    settlement.principal_sats = data.split.principal_sats
    settlement.commission_sats = data.split.commission_sats
    settlement.commission_percentage = (
        float(data.commission_percentage)
        if data.commission_percentage is not None
        else None
    )
    settlement.discount = float(data.discount) if data.discount is not None else None
    settlement.reported_fee_sats = data.reported_fee_sats
    settlement.lamassu_transaction_id = data.lamassu_transaction_id
    # Trimmed as machines are stored (machine_seen, POST /machines): a padded
    # id would name no machine, and its commission would go to the global
    # partners instead of the machine's own.
    settlement.device_id = (data.device_id or "").strip() or settlement.device_id
    settlement.atm_txid = data.atm_txid
    settlement.cash_out_time = data.cash_out_time
    stored = {"payment_extra": payment_extra_of(settlement), "cash_out": data.raw}
    settlement.cash_out_data = json.dumps(stored, default=str)
    if data.review_reason:
        settlement.status = SettlementStatus.flagged.value
        settlement.set_detail(data.review_reason)
    else:
        settlement.status = SettlementStatus.ready.value
        settlement.set_detail(
            Message("settlement.cash_out_from", {"source": data.source})
        )


async def _plan(settlement: Settlement, config: LamassuConfig | None) -> Settlement:
    """Split the settlement and write every payout row, the split and the orphan
    in one transaction."""
    assert settlement.fiat_amount is not None and settlement.fiat_code
    assert (
        settlement.principal_sats is not None and settlement.commission_sats is not None
    )
    split = PrincipalSplit(settlement.principal_sats, settlement.commission_sats)
    # Who shares the commission (#14), read before the transaction opens.
    recipients = await recipients_for(settlement.device_id, config)
    # No client naming a source wallet takes part (see get_flow_balances).
    sources = await source_wallet_ids(config) | {settlement.wallet_id}
    moment = settlement.cash_out_time or settlement.paid_at
    schedule = Schedule.of(config)
    fixed = fixed_day(config, moment)
    async with transaction() as tx:
        balances = await get_flow_balances(
            tx,
            settlement.fiat_code,
            settlement.paid_at,
            settlement.id,
            source_wallets=sources,
            fixed=fixed,
        )
        plan = distribute(
            settlement.amount_sats, split, settlement.fiat_amount, balances
        )
        now = utc_now()
        parts = commission_payout_rows(settlement, recipients, now)
        settlement.exchange_rate = plan.rate_sats_per_fiat()
        settlement.orphan_sats = plan.orphan_sats
        settlement.orphan_fiat = plan.orphan_fiat
        settlement.distributed_sats = plan.distributed_sats
        settlement.distributed_fiat = plan.distributed_fiat
        # One part: its wallet, as before; several: see the parts.
        single = len(parts) == 1 and parts[0].wallet_id != settlement.wallet_id
        settlement.commission_wallet_id = parts[0].wallet_id if single else None
        settlement.commission_status = (
            "pending" if any(p.status == "pending" for p in parts) else "kept"
        )
        settlement.status = SettlementStatus.distributing.value
        settlement.set_detail(_plan_summary(plan, len(balances)))
        settlement.updated_at = utc_now()
        data = model_to_dict(settlement)
        sets = ", ".join(f'"{k}" = :{k}' for k in data if k != "id")
        data["expected"] = SettlementStatus.ready.value
        result = await tx.conn.conn.execute(
            text(
                f"UPDATE satoshimachine.settlements SET {sets} "
                "WHERE id = :id AND status = :expected"
            ),
            data,
        )
        if result.rowcount != 1:
            raise ProcessingError("conflict.settlement_changed_planning")
        for part in parts:
            await tx.insert("satoshimachine.commission_payouts", part)
        now = utc_now()
        fixed_ids = {b.client_id for b in balances if b.cap is not None}
        deliver_after = schedule.next_slot(now)
        for allocation in plan.allocations:
            is_fixed = allocation.client_id in fixed_ids
            await tx.insert(
                "satoshimachine.dca_payments",
                DcaPayment(
                    id=urlsafe_short_hash(),
                    client_id=allocation.client_id,
                    amount_sats=allocation.sats,
                    amount_fiat=allocation.fiat,
                    currency=settlement.fiat_code,
                    exchange_rate=plan.rate_sats_per_fiat(),
                    transaction_type="fixed" if is_fixed else "flow",
                    lamassu_transaction_id=settlement.lamassu_transaction_id,
                    status=PayoutStatus.pending.value,
                    created_at=now,
                    transaction_time=moment,
                    settlement_id=settlement.id,
                    updated_at=now,
                    deliver_after=deliver_after if is_fixed else None,
                ),
            )
        if plan.orphan_sats > 0:
            await tx.insert(
                "satoshimachine.reconciliations",
                Reconciliation(
                    id=urlsafe_short_hash(),
                    settlement_id=settlement.id,
                    orphan_sats=plan.orphan_sats,
                    orphan_fiat=plan.orphan_fiat,
                    fiat_code=settlement.fiat_code,
                    exchange_rate=plan.rate_sats_per_fiat(),
                    created_at=now,
                    updated_at=now,
                ),
            )
    if plan.orphan_sats > 0:
        logger.warning(
            f"satmachineadmin: settlement {settlement.id}: {plan.orphan_sats} sats "
            f"({plan.orphan_fiat} {settlement.fiat_code}) not covered by tracked "
            "client balances; recorded as an orphan for reconciliation"
        )
    return settlement


def _plan_summary(plan: Distribution, clients: int) -> Message:
    params = {
        "paid": len(plan.allocations),
        "clients": clients,
        "sats": plan.distributed_sats,
        "commission": plan.commission_sats,
    }
    if plan.orphan_sats:
        return Message("settlement.plan_orphan", {**params, "orphan": plan.orphan_sats})
    return Message("settlement.plan", params)


# -------------------------------------------------------------------- payments


@dataclass
class TransferResult:
    ok: bool
    # Ours as a message; what LNbits raised paying it as its own text.
    error: Message | str | None = None
    payment_hash: str | None = None
    # Another run stored a different invoice first: not a failure of the
    # transfer, and nothing for this run to record.
    contended: bool = False


async def abandon_invoice(
    payment_hash: str | None,
    source_wallet_id: str | None = None,
    sats: int | None = None,
    of: dict[str, str] | None = None,
) -> bool:
    """Make an invoice this extension stored unpayable (its pending incoming
    payment set failed), so an invoice that is not to be paid (an earlier
    attempt's, an old target's, one nobody stored) never is. Returns True if
    it was already paid: then it is the transfer that happened, and nothing
    was abandoned. With `source_wallet_id` and `sats` (every caller that knows
    them), "paid" means paid by that wallet, that amount, for that row (`of`,
    see `_paid_from`): a hash other software wrote on our row, of a payment
    the source never made for it, is not the transfer.

    Only an invoice this extension made (its tag) is touched: a hash on our
    row naming another wallet's or extension's pending invoice leaves it
    payable by whoever it is for.

    A compare-and-set on `pending`, never a write of a row read earlier: LNbits
    marks an invoice paid by writing its row, and a row written back from an
    earlier read would undo that payment while the payer's debit stands."""
    if not payment_hash:
        return False

    async def paid() -> bool:
        if source_wallet_id is not None and sats is not None:
            return await _paid_from(payment_hash, source_wallet_id, sats, of)
        return await _already_paid(payment_hash)

    if await paid():
        return True
    pending = await check_internal(payment_hash)
    if pending and _is_ours(pending):
        async with core_db.connect() as conn:
            await conn.execute(
                "UPDATE apipayments SET status = :failed "
                "WHERE checking_id = :checking_id AND status = :pending "
                "AND amount > 0",
                {
                    "failed": PaymentState.FAILED.value,
                    "pending": PaymentState.PENDING.value,
                    "checking_id": pending.checking_id,
                },
            )
    # Paid between the first look and the update: the update found nothing
    # pending, and the payment is the transfer.
    return await paid()


def _is_ours(invoice: Payment) -> bool:
    """An invoice this extension made (every one carries its tag)."""
    return invoice.tag == EXTENSION_TAG or invoice.extra.get("tag") == EXTENSION_TAG


def _invoice_hash(bolt11: str | None) -> str | None:
    if not bolt11:
        return None
    try:
        return decode_bolt11(bolt11).payment_hash
    except Exception:
        return None


async def _already_paid(payment_hash: str) -> bool:
    if await is_internal_status_success(payment_hash):
        return True
    outgoing = await get_standalone_payment(f"internal_{payment_hash}")
    return bool(outgoing and outgoing.success)


# The keys of an invoice's extra that name the row it pays.
ROW_KEYS = ("payout_id", "commission_payout_id", "reconciliation_id")


def _row_of(extra: dict[str, Any]) -> dict[str, str]:
    return {key: extra[key] for key in ROW_KEYS if extra.get(key)}


async def _paid_from(
    payment_hash: str,
    source_wallet_id: str,
    sats: int,
    of: dict[str, str] | None = None,
) -> bool:
    """The source wallet paid this invoice, `sats`: LNbits' payer row
    (`internal_<hash>`, success) from that wallet, of that amount. Whatever
    the invoice's own row says afterwards (a credit LNbits' pending check
    undid is repaired by repair_half_paid_invoices): the payment happened,
    if the invoice is one this extension made, for this row (`of`: its
    payout_id, commission_payout_id or reconciliation_id; an invoice that
    names none is taken as it is). Any other paid payment under that hash
    (another wallet's, the settlement's own, the source wallet's payment of
    someone else's invoice, another payout's invoice) is not this one."""
    outgoing = await get_standalone_payment(f"internal_{payment_hash}")
    if not (
        outgoing
        and outgoing.success
        and outgoing.checking_id == f"internal_{payment_hash}"
        and outgoing.wallet_id == source_wallet_id
        and outgoing.amount == -sats * 1000
    ):
        return False
    invoice = await get_standalone_payment(payment_hash, incoming=True)
    if not (invoice and invoice.checking_id == payment_hash and _is_ours(invoice)):
        return False
    return all(
        invoice.extra.get(key) in (None, value) for key, value in (of or {}).items()
    )


# How far back repair_half_paid_invoices looks: LNbits' pending check reads
# the pending payments of the last 15 days.
HALF_PAID_LOOKBACK = timedelta(days=16)


async def repair_half_paid_invoices() -> int:
    """LNbits pays an internal invoice with two writes: the payer's row
    (`internal_<hash>`, success) and the invoice marked paid. Its pending-
    payment check (a permanent task: at start-up, then every
    `lnbits_funding_source_pending_interval_seconds`) lists the pending
    payments, asks the funding source about each, and writes back the whole
    row it listed. An invoice of ours it listed as pending, and that a payout
    paid before it got there, is written back `failed` (FakeWallet forgets its
    invoices on a restart; a funding source never knew one made with
    `internal=True`) while the payer's debit stands: the source wallet paid,
    the client received nothing. Other LNbits writes of a row read earlier
    do the same with the status they read, `pending` (a wallet's label update
    of its incoming invoice), which a funding source that answers "pending"
    for an invoice it never knew leaves so. Such an invoice is set paid again
    (only if still `failed` or `pending`, only for payments from a source
    wallet or a wallet a settlement arrived in (the configuration may have
    moved on since), only with the payer's row of the same amount): that
    completes LNbits' own payment, whose debit is already there (LNbits
    writes the payer's row and the paid invoice in one transaction, so a
    committed payer's row beside a pending invoice is never a payment in
    progress); nothing is minted. Returns how many."""
    sources = sorted(
        await source_wallet_ids(await get_config()) | await settlement_wallet_ids()
    )
    if not sources:
        return 0
    names = {f"source_{i}": wallet for i, wallet in enumerate(sources)}
    since = int((utc_now() - HALF_PAID_LOOKBACK).timestamp())
    rows = await core_db.fetchall(
        "SELECT invoice.checking_id AS checking_id, invoice.wallet_id AS wallet_id, "
        "invoice.amount AS amount, invoice.status AS status "
        "FROM apipayments AS payer "
        "JOIN apipayments AS invoice ON invoice.payment_hash = payer.payment_hash "
        "AND payer.checking_id = 'internal_' || invoice.checking_id "
        f"WHERE payer.wallet_id IN ({', '.join(':' + n for n in names)}) "
        "AND payer.status = 'success' AND invoice.status IN ('failed', 'pending') "
        "AND invoice.amount > 0 AND invoice.amount = -payer.amount "
        f"AND payer.time > {core_db.timestamp_placeholder('since')}",
        {**names, "since": since},
    )
    repaired = 0
    for row in rows:
        async with core_db.connect() as conn:
            result = await conn.execute(
                "UPDATE apipayments SET status = 'success' "
                "WHERE checking_id = :checking_id AND status = :status",
                {"checking_id": row["checking_id"], "status": row["status"]},
            )
        if result.rowcount == 1:
            repaired += 1
            logger.warning(
                f"satmachineadmin: invoice {row['checking_id']} into wallet "
                f"{row['wallet_id']} was paid by a source wallet but written back "
                f"as {row['status']} by LNbits (a row it read earlier); set paid "
                f"again "
                f"({row['amount'] // 1000} sats)"
            )
    return repaired


async def transfer(
    *,
    source_wallet_id: str,
    target_wallet_id: str,
    sats: int,
    memo: str,
    extra: dict[str, Any],
    stored_bolt11: str | None,
    stored_hash: str | None,
    remember,
    refused_wallets: Collection[str] = (),
) -> TransferResult:
    """Pay `sats` from the source wallet to a wallet on this LNbits, at most once.

    `remember(bolt11, payment_hash, replacing) -> bool` stores the invoice on our
    row before it is paid, only if the row still holds `replacing` (None: no
    invoice yet); if it returns False another run stored one first, and that one
    is used instead (the caller reloads)."""
    kind = extra.get("kind", "payout")
    if target_wallet_id == source_wallet_id:
        # LNbits lets a wallet pay its own internal invoice: it would "succeed"
        # with no sat moving, and the payout would debit a balance for nothing.
        return TransferResult(False, Message("transfer.target_is_source"))
    extra = {"tag": EXTENSION_TAG, **extra}
    # What the row holds (None: no invoice hash, NULL or empty); remember()
    # stores over exactly that. A bolt11 without its hash (other software's
    # row) is the invoice of the hash it carries.
    replacing = stored_hash or None
    stored_hash = stored_hash or _invoice_hash(stored_bolt11)
    if stored_hash:
        # An invoice an earlier attempt stored and did not pay (a crash, a
        # failed payment, a target changed since) is never paid later: it is
        # made unpayable and a new one replaces it, paid at once. LNbits'
        # pending-payment check (at start-up, then every
        # `lnbits_funding_source_pending_interval_seconds`) lists the pending
        # invoices, asks the funding source (which never knew an internal one:
        # "failed") and writes each listed row back later; an invoice paid
        # between its listing and that write is written back failed over the
        # payment while the payer's debit stands. A stored invoice waits for a
        # retry, so it is the one most likely listed; a fresh one is paid
        # moments after it exists (repair_half_paid_invoices mends the rest).
        if await abandon_invoice(stored_hash, source_wallet_id, sats, _row_of(extra)):
            return TransferResult(True, payment_hash=stored_hash)
        crash_point(f"{kind}_invoice_abandoned")
        # LNbits would still credit a deleted wallet, out of the client's reach.
        target = await get_wallet(target_wallet_id, deleted=None)
        if target and target.deleted:
            return TransferResult(
                False,
                Message("transfer.wallet_deleted", {"wallet": target_wallet_id}),
                stored_hash,
            )
    try:
        async with core_db.connect() as conn:
            invoice = await _create_internal_invoice(
                target_wallet_id, sats, memo, extra, conn
            )
    except Exception as exc:
        # Looked up only on failure: one query less on every payout.
        if not await get_wallet(target_wallet_id):
            return TransferResult(
                False,
                Message("transfer.wallet_not_found", {"wallet": target_wallet_id}),
            )
        return TransferResult(
            False, Message("transfer.invoice_failed", {"error": error_of(exc)})
        )
    if invoice.wallet_id == source_wallet_id or invoice.wallet_id in (refused_wallets):
        # The target is LNbits' share of the source wallet (or of another
        # refused wallet): the invoice was created on that wallet itself,
        # so paying it would move nothing (or park the sats there).
        await abandon_invoice(invoice.payment_hash, source_wallet_id, sats)
        return TransferResult(
            False,
            Message(
                "transfer.target_is_share_of_source",
                {"wallet": target_wallet_id, "source": invoice.wallet_id},
            ),
        )
    crash_point(f"{kind}_invoice_created")
    if not await remember(invoice.bolt11, invoice.payment_hash, replacing):
        # Ours is never stored, so it must never be payable either.
        await abandon_invoice(invoice.payment_hash, source_wallet_id, sats)
        return TransferResult(False, Message("transfer.contended"), contended=True)
    crash_point(f"{kind}_invoice_stored")
    bolt11, payment_hash = invoice.bolt11, invoice.payment_hash
    error = await _pay_stored_invoice(source_wallet_id, bolt11, memo, extra)
    if error is not None:
        if await _paid_from(payment_hash, source_wallet_id, sats, _row_of(extra)):
            return TransferResult(True, payment_hash=payment_hash)
        return TransferResult(False, error, payment_hash)
    crash_point(f"{kind}_paid")
    return TransferResult(True, payment_hash=payment_hash)


# How many fresh payouts share one invoice-creating connection, one transaction
# storing their invoices and one transaction confirming them.
PAYOUT_CHUNK = 25
INVOICE_EXPIRY = 60 * 60 * 24 * 365


async def _create_internal_invoice(
    wallet_id: str, sats: int, memo: str, extra: dict[str, Any], conn
) -> Payment:
    return await create_invoice(
        wallet_id=wallet_id,
        amount=sats,
        memo=memo,
        internal=True,
        extra=extra,
        expiry=INVOICE_EXPIRY,
        conn=conn,
    )


async def _pay_stored_invoice(
    source_wallet_id: str, bolt11: str, memo: str, extra: dict[str, Any]
) -> Message | str | None:
    """Pay an invoice whose hash is already stored (committed) on our row, on
    one LNbits connection instead of the dozen or so `pay_invoice` opens by
    itself. Returns None when paid, else the error. The connection is held for
    this one payment only, so other users of LNbits' database wait for one
    payment at most.

    Paid means paid internally: LNbits' payer row `internal_<hash>`, success.
    An invoice LNbits failed before this payment (its pending check, a wallet
    page or anyone's GET /api/v1/payments/<hash> asked the funding source,
    which never knew an internal invoice) is no longer internal to LNbits:
    pay_invoice tries the funding source and, on a "pending" answer, returns
    without raising (even the target's own unpaid invoice). That is no
    payment; the retry pays a new invoice."""
    try:
        async with core_db.connect() as conn:
            payment = await pay_invoice(
                wallet_id=source_wallet_id,
                payment_request=bolt11,
                extra=extra,
                description=memo,
                conn=conn,
            )
    except Exception as exc:
        return str(exc) or exc.__class__.__name__
    if payment.checking_id.startswith("internal_") and payment.success:
        return None
    return Message("transfer.not_paid_internally", {"status": str(payment.status)})


def _memo(sats: int, fiat: Decimal, code: str, rate: float | None) -> str:
    basis = ""
    if rate:
        basis = f" @ {Decimal(10**8) / Decimal(str(rate)):,.2f} {code}/BTC"
    return f"DCA: {sats:,} sats for {fiat:,.2f} {code}{basis}"


def _is_source_target(
    client: DcaClient, settlement: Settlement, sources: set[str]
) -> bool:
    """A client row (possibly written by other software) naming a wallet ATM
    settlements arrive in: paying it would only move the operator's sats
    between the operator's wallets. Such a payout is refused, never paid."""
    return client.wallet_id == settlement.wallet_id or client.wallet_id in sources


async def _hold_uncovered(
    payouts: list[tuple[Settlement, DcaPayment]],
) -> set[str]:
    """The payouts (about to be paid, in this order, under the money lock)
    that the client's balance no longer covers: confirmed deposits less
    confirmed payouts, what the client extension shows. Other software may
    have cancelled or lowered a confirmed deposit since the split reserved the
    payout (a scheduled fixed payout waits hours for its slot). Such a payout
    is held, never paid beyond the balance: failed, with the reason, its fiat
    still reserved and its sats in the source wallet, until a retry finds the
    balance covers it again or the operator cancels it into the orphan. An
    invoice stored for it that was paid after all is the payout (confirmed).
    Returns the ids held."""
    if not payouts:
        return set()
    left: dict[tuple[str, str], Decimal] = {}
    by_currency: dict[str, set[str]] = {}
    for settlement, payout in payouts:
        # As the split read it (get_flow_balances): the settlement's code.
        currency = settlement.fiat_code or payout.currency or ""
        by_currency.setdefault(currency, set()).add(payout.client_id)
    for currency, client_ids in by_currency.items():
        for client_id, balance in (
            await get_paid_balances(client_ids, currency)
        ).items():
            left[(client_id, currency)] = balance
    held: set[str] = set()
    for settlement, payout in payouts:
        currency = settlement.fiat_code or payout.currency or ""
        key = (payout.client_id, currency)
        balance = left.get(key, Decimal("0.00"))
        if payout.amount_fiat <= balance:
            left[key] = balance - payout.amount_fiat
            continue
        if await abandon_invoice(
            payout.payment_hash,
            settlement.wallet_id,
            payout.amount_sats,
            {"payout_id": payout.id},
        ):
            # Paid after all (a crash after paying): that is the payout.
            await set_payout_status(
                payout.id, PayoutStatus.confirmed, count_attempt=True
            )
            crash_point("payout_confirmed")
            left[key] = balance - payout.amount_fiat
            continue
        error = Message(
            "payout.balance_does_not_cover",
            {
                "fiat": f"{payout.amount_fiat:.2f}",
                "balance": f"{balance:.2f}",
                "currency": currency,
            },
        )
        logger.warning(f"satmachineadmin: payout {payout.id}: {error.render('en')}")
        # Each pass counts an attempt: the payout_failed alert tells the
        # operator after the configured number of them.
        await set_payout_status(
            payout.id, PayoutStatus.failed, error, count_attempt=True
        )
        held.add(payout.id)
    return held


async def _pay_all(settlement: Settlement) -> Settlement:
    payouts = await get_settlement_payouts(settlement.id)
    clients = {client.id: client for client in await get_clients()}  # one query
    sources = await source_wallet_ids(await get_config())
    fresh: list[tuple[DcaPayment, DcaClient]] = []
    payable = [
        payout
        for payout in payouts
        if payout.status in (PayoutStatus.pending.value, PayoutStatus.failed.value)
        # A scheduled payout: its delivery slot pays it (deliver_scheduled),
        # never before.
        and not payout.scheduled
    ]
    held = await _hold_uncovered([(settlement, payout) for payout in payable])
    for payout in payable:
        if payout.id in held:
            continue
        client = clients.get(payout.client_id)
        if (
            client
            and not payout.bolt11
            and not payout.payment_hash
            and not _is_source_target(client, settlement, sources)
        ):
            fresh.append((payout, client))
        else:  # a stored invoice to check first, or a failure to record
            await _pay_payout(settlement, payout, client, sources)
    for start in range(0, len(fresh), PAYOUT_CHUNK):
        await _pay_fresh_payouts(
            settlement, fresh[start : start + PAYOUT_CHUNK], sources
        )
    await _pay_commission(settlement)
    return await _finish(settlement.id)


def _payout_memo_and_extra(
    settlement: Settlement, payout: DcaPayment, client: DcaClient
) -> tuple[str, dict[str, Any]]:
    memo = _memo(
        payout.amount_sats,
        payout.amount_fiat,
        settlement.fiat_code or "",
        settlement.exchange_rate,
    )
    extra = {
        "tag": EXTENSION_TAG,
        "settlement_id": settlement.id,
        "client_id": client.id,
        "payout_id": payout.id,
        "fiat_amount": str(payout.amount_fiat),
        "fiat_code": settlement.fiat_code,
    }
    return memo, extra


async def _pay_fresh_payouts(
    settlement: Settlement,
    chunk: list[tuple[DcaPayment, DcaClient]],
    sources: set[str],
) -> None:
    """Payouts that have no invoice yet, a chunk at a time, in the same steps
    as transfer() and with the same crash points, but batched where batching
    is safe:

    1. their invoices are created on one LNbits connection;
    2. all of them are stored on their rows in one transaction, committed
       before any is paid (compare-and-set over no invoice, as in
       set_payout_invoice: a row another run filled is left to that run);
    3. each is paid on a connection of its own (one instead of a dozen);
    4. the outcomes are written in one transaction.

    A crash before 2 leaves invoices nobody knows about (never paid: the rows
    get new ones); after 2, every row holds its invoice and the recovery pays
    it or finds it paid (transfer()); a payout paid but not yet confirmed at
    a crash is found paid the same way. Anything unusual (an invoice LNbits
    refuses to create) goes through _pay_payout, which records the failure."""
    created: list[tuple[DcaPayment, DcaClient, Payment, str, dict[str, Any]]] = []
    leftovers: list[tuple[DcaPayment, DcaClient]] = []
    unwanted: list[str] = []
    async with core_db.connect() as conn:
        for payout, client in chunk:
            memo, extra = _payout_memo_and_extra(settlement, payout, client)
            try:
                invoice = await _create_internal_invoice(
                    client.wallet_id, payout.amount_sats, memo, extra, conn
                )
            except Exception:
                await conn.conn.rollback()
                leftovers.append((payout, client))
                continue
            if invoice.wallet_id != client.wallet_id:
                # A shared wallet (LNbits' share of another wallet): its
                # invoice is made unpayable below (not on this connection)
                # and the payout left to transfer(), which refuses a share
                # of a source wallet.
                unwanted.append(invoice.payment_hash)
                leftovers.append((payout, client))
                continue
            crash_point("payout_invoice_created")
            created.append((payout, client, invoice, memo, extra))
    for payment_hash in unwanted:
        await abandon_invoice(payment_hash)
    stored_ids = await set_payout_invoices(
        [(p.id, inv.bolt11, inv.payment_hash) for p, _, inv, _, _ in created]
    )
    to_pay = []
    for payout, client, invoice, memo, extra in created:
        if payout.id not in stored_ids:
            # Ours is never stored, so it must never be payable either.
            await abandon_invoice(
                invoice.payment_hash,
                settlement.wallet_id,
                payout.amount_sats,
                {"payout_id": payout.id},
            )
            continue
        crash_point("payout_invoice_stored")
        to_pay.append((payout, client, invoice, memo, extra))
    outcomes: list[tuple[str, PayoutStatus, Message | str | None]] = []
    for payout, client, invoice, memo, extra in to_pay:
        error = await _pay_stored_invoice(
            settlement.wallet_id, invoice.bolt11, memo, extra
        )
        if error is not None and await _paid_from(
            invoice.payment_hash,
            settlement.wallet_id,
            payout.amount_sats,
            {"payout_id": payout.id},
        ):
            error = None
        if error is None:
            crash_point("payout_paid")
            outcomes.append((payout.id, PayoutStatus.confirmed, None))
        else:
            logger.warning(
                f"satmachineadmin: payout {payout.id} to client {client.id} "
                f"failed: {error}"
            )
            outcomes.append((payout.id, PayoutStatus.failed, error))
    await set_payout_statuses(outcomes)
    for _, status, _ in outcomes:
        if status == PayoutStatus.confirmed:
            crash_point("payout_confirmed")
    for payout, client in leftovers:
        await _pay_payout(settlement, payout, client, sources)


async def _pay_payout(
    settlement: Settlement,
    payout: DcaPayment,
    client: DcaClient | None = None,
    sources: set[str] | None = None,
) -> bool:
    client = client or await get_client(payout.client_id)
    if not client:
        await set_payout_status(
            payout.id,
            PayoutStatus.failed,
            Message("payout.client_not_found"),
            count_attempt=True,
        )
        return False
    if sources is None:
        sources = await source_wallet_ids(await get_config())
    if _is_source_target(client, settlement, sources):
        return await _refuse_source_target(settlement, payout, client)

    async def remember(bolt11: str, payment_hash: str, replacing: str | None) -> bool:
        return await set_payout_invoice(payout.id, bolt11, payment_hash, replacing)

    result = await transfer(
        source_wallet_id=settlement.wallet_id,
        target_wallet_id=client.wallet_id,
        sats=payout.amount_sats,
        memo=_memo(
            payout.amount_sats,
            payout.amount_fiat,
            settlement.fiat_code or "",
            settlement.exchange_rate,
        ),
        extra={
            "settlement_id": settlement.id,
            "client_id": client.id,
            "payout_id": payout.id,
            "fiat_amount": str(payout.amount_fiat),
            "fiat_code": settlement.fiat_code,
        },
        stored_bolt11=payout.bolt11,
        stored_hash=payout.payment_hash,
        remember=remember,
        refused_wallets=sources,
    )
    if result.ok:
        await set_payout_status(payout.id, PayoutStatus.confirmed, count_attempt=True)
        crash_point("payout_confirmed")
        return True
    if result.contended:
        return False
    logger.warning(
        f"satmachineadmin: payout {payout.id} to client {client.id} failed: "
        f"{result.error}"
    )
    await set_payout_status(
        payout.id, PayoutStatus.failed, result.error or "", count_attempt=True
    )
    return False


async def _refuse_source_target(
    settlement: Settlement, payout: DcaPayment, client: DcaClient
) -> bool:
    """A client row naming a source wallet (this settlement's or another
    machine's; other software wrote it, or it changed after the split) is
    never paid: the sats would only move between the operator's wallets while
    the client is debited. The payout fails visibly (its fiat stays reserved)
    until the client has a wallet of its own (then retry) or the operator
    cancels it into the orphan. An invoice stored for an earlier wallet is
    made unpayable first, unless it was paid: then that is the payout."""
    if await abandon_invoice(
        payout.payment_hash,
        settlement.wallet_id,
        payout.amount_sats,
        {"payout_id": payout.id},
    ):
        await set_payout_status(payout.id, PayoutStatus.confirmed, count_attempt=True)
        crash_point("payout_confirmed")
        return True
    error = Message(
        "payout.client_wallet_is_source",
        {"wallet": client.wallet_id, "client": client.id},
    )
    logger.warning(f"satmachineadmin: payout {payout.id}: {error.render('en')}")
    await set_payout_status(payout.id, PayoutStatus.failed, error, count_attempt=True)
    return False


async def _pay_commission(settlement: Settlement) -> None:
    """Pay every open part of the settlement's commission (#14), each like a
    client payout: its invoice stored before it is paid, paid at most once."""
    fresh = await get_settlement(settlement.id)
    if not fresh or fresh.commission_status not in ("pending", "failed"):
        return
    parts = await get_commission_payouts(fresh.id)
    if not parts:
        return
    for part in parts:
        if part.status in ("pending", "failed"):
            await _pay_commission_part(fresh, part)
    await update_commission_summary(fresh.id)


async def _pay_commission_part(settlement: Settlement, part: CommissionPayout) -> None:
    async def remember(bolt11: str, payment_hash: str, replacing: str | None) -> bool:
        return await set_commission_invoice(part.id, bolt11, payment_hash, replacing)

    result = await transfer(
        source_wallet_id=settlement.wallet_id,
        target_wallet_id=part.wallet_id,
        sats=part.amount_sats,
        memo=(
            f"ATM commission: {part.amount_sats:,} sats "
            f"({part.percent} % of {settlement.commission_sats:,}, {settlement.id})"
        ),
        extra={
            "settlement_id": settlement.id,
            "kind": "commission",
            "commission_payout_id": part.id,
        },
        stored_bolt11=part.bolt11,
        stored_hash=part.payment_hash,
        remember=remember,
    )
    if result.contended:
        return
    if result.ok:
        await set_commission_status(
            part.id, "confirmed", changes={"payment_hash": result.payment_hash}
        )
        crash_point("commission_confirmed")
        return
    target = await _part_target(settlement, part)
    if target == "":
        # Nobody to pay any more: it stays in the source wallet, and its
        # stored invoice (to the gone wallet) is made unpayable.
        if await abandon_invoice(
            part.payment_hash,
            settlement.wallet_id,
            part.amount_sats,
            {"commission_payout_id": part.id},
        ):
            await set_commission_status(part.id, "confirmed")
        else:
            await set_commission_status(
                part.id,
                "kept",
                Message("commission.wallet_gone_kept", {"wallet": part.wallet_id}),
            )
        return
    if target is not None:
        if await redirect_commission_payout(part.id, part.wallet_id, target):
            moved = part.copy(update={"wallet_id": target, "status": "pending"})
            await _pay_commission_part(settlement, moved)
        return
    logger.warning(
        f"satmachineadmin: commission part {part.id} of settlement {settlement.id} "
        f"to {part.wallet_id} failed: {result.error}"
    )
    if await set_commission_status(part.id, "failed", result.error or ""):
        english, message = stored_text(result.error)
        await add_audit(
            "commission_payout",
            part.id,
            "failed",
            None,
            {"wallet_id": part.wallet_id, "error": english, "error_msg": message},
        )


async def _part_target(settlement: Settlement, part: CommissionPayout) -> str | None:
    """Where a part whose payment failed goes now. None: nowhere else (it
    stays failed, visibly, until fixed and retried).

    A part goes elsewhere only when its wallet is gone (deleted) and the
    operator has since changed the recipients: to the current recipient at the
    same place in the list (so a replaced single commission wallet is followed),
    or, when there are no recipients any more, it is kept in the source wallet
    (returns ""). The old stored invoice is never paid: transfer() abandons an
    invoice whose wallet is not the target."""
    wallet = await get_wallet(part.wallet_id)
    if wallet and not wallet.deleted:
        return None
    current = await recipients_for(settlement.device_id, await get_config())
    if any(r.wallet_id == part.wallet_id for r in current):
        return None  # still configured: it fails, visibly, until fixed
    if not current:
        logger.warning(
            f"satmachineadmin: settlement {settlement.id}: commission wallet "
            f"{part.wallet_id} is gone; its part is kept in the source wallet"
        )
        return ""
    if part.position >= len(current):
        return None
    replacement = current[part.position].wallet_id
    if replacement == settlement.wallet_id:
        return ""
    new_wallet = await get_wallet(replacement)
    if not new_wallet or new_wallet.deleted:
        return None
    return replacement


async def _finish(settlement_id: str) -> Settlement:
    settlement = await get_settlement(settlement_id)
    assert settlement
    payouts = await get_settlement_payouts(settlement_id)
    done = (PayoutStatus.confirmed.value, PayoutStatus.cancelled.value)
    scheduled = [p for p in payouts if p.scheduled]
    failed = [p for p in payouts if p.status not in done and not p.scheduled]
    # Unpaid commission (failed, or still pending because another run holds
    # it) keeps the settlement open as surely as an unpaid payout does.
    commission_open = settlement.commission_status in ("pending", "failed")
    expected = {
        "status": settlement.status,
        "commission_status": settlement.commission_status,
    }
    before_detail = settlement.status_detail
    if failed or commission_open:
        settlement.status = SettlementStatus.payout_failed.value
        problems: list[Message] = []
        if failed:
            problems.append(
                Message("settlement.payouts_failed", {"count": len(failed)})
            )
        if commission_open:
            problems.append(
                Message(
                    f"settlement.commission_{settlement.commission_status}",
                    {"error": await _commission_error(settlement)},
                )
            )
        settlement.set_detail(
            Message("settlement.retry_when_fixed", {"problems": problems})
        )
    elif scheduled:
        # Nothing for the processor to do: the delivery slot pays the rest.
        settlement.status = SettlementStatus.scheduled.value
        due = min(as_utc(p.deliver_after) for p in scheduled if p.deliver_after)
        settlement.set_detail(
            Message(
                "settlement.scheduled",
                {"count": len(scheduled), "due": f"{due:%Y-%m-%d %H:%M}"},
            )
        )
    else:
        settlement.status = SettlementStatus.completed.value
    if (settlement.status, settlement.status_detail) == (
        SettlementStatus.scheduled.value,
        before_detail,
    ) and expected["status"] == SettlementStatus.scheduled.value:
        return settlement  # still waiting for its slot: nothing to write
    await compare_and_set(
        "settlements",
        settlement.id,
        expected,
        {
            "status": settlement.status,
            "status_detail": settlement.status_detail,
            "status_detail_msg": settlement.status_detail_msg,
        },
    )
    return settlement


async def _commission_error(settlement: Settlement) -> Message | str:
    """Why the commission is not paid: its first failed part's error (as
    update_commission_summary keeps it), as a message when one was stored."""
    if settlement.commission_error:
        for part in await get_commission_payouts(settlement.id):
            if part.status == "failed" and part.error == settlement.commission_error:
                return stored_message(part.error, part.error_msg) or ""
        return settlement.commission_error
    return Message("settlement.commission_not_paid_yet")


# ---------------------------------------------------------- operator actions


async def enter_cash_out(
    settlement_id: str, data: ManualCashOutData, actor: str | None
) -> Settlement:
    async with money_lock():
        settlement = await get_settlement(settlement_id)
        if not settlement:
            raise LookupError("settlement not found")
        allowed = (*LOOKUP_STATUSES, *OPERATOR_STATUSES)
        if settlement.status not in allowed:
            raise ProcessingError(
                "conflict.cash_out_not_allowed", status=settlement.status
            )
        cash_out = manual_cash_out(settlement, data)
        expected = settlement.status
        _apply_cash_out(settlement, cash_out)
        # Typed figures are a claim too: a price far from the market is flagged
        # (the operator then accepts it knowingly).
        await _check_price(settlement, await get_config())
        settlement.reviewed_by = actor
        settlement.review_note = data.note
        if not await update_settlement(settlement, expected_status=expected):
            raise ProcessingError("conflict.settlement_changed_retry")
        await machine_seen(settlement)
        await add_audit(
            "settlement",
            settlement.id,
            "cash_out_entered",
            actor,
            json.loads(data.json()),
        )
        return await _advance(settlement_id) or settlement


async def accept_settlement(
    settlement_id: str, note: str, actor: str | None
) -> Settlement:
    """The operator accepts a flagged settlement's cash-out data as it is (e.g.
    a price nothing could confirm): it is split at once. Only a settlement
    whose data is complete can be accepted; otherwise enter the data."""
    async with money_lock():
        settlement = await get_settlement(settlement_id)
        if not settlement:
            raise LookupError("settlement not found")
        if settlement.status != SettlementStatus.flagged.value:
            raise ProcessingError(
                "conflict.accept_only_flagged", status=settlement.status
            )
        if (
            settlement.fiat_amount is None
            or not settlement.fiat_code
            or settlement.principal_sats is None
            or settlement.commission_sats is None
        ):
            raise ProcessingError("conflict.accept_incomplete")
        flagged_for = settlement.status_detail
        flagged_for_msg = settlement.status_detail_msg
        settlement.status = SettlementStatus.ready.value
        settlement.set_detail(Message("settlement.accepted", {"note": note}))
        settlement.reviewed_by = actor
        settlement.review_note = note
        if not await update_settlement(
            settlement, expected_status=SettlementStatus.flagged.value
        ):
            raise ProcessingError("conflict.settlement_changed_retry")
        await add_audit(
            "settlement",
            settlement.id,
            "accepted",
            actor,
            {
                "note": note,
                "flagged_for": flagged_for,
                "flagged_for_msg": flagged_for_msg,
            },
        )
        return await _advance(settlement_id) or settlement


async def dismiss_settlement(
    settlement_id: str, reason: str, actor: str | None
) -> Settlement:
    async with money_lock():
        settlement = await get_settlement(settlement_id)
        if not settlement:
            raise LookupError("settlement not found")
        allowed = (*LOOKUP_STATUSES, *OPERATOR_STATUSES)
        if settlement.status not in allowed:
            raise ProcessingError(
                "conflict.dismiss_not_allowed", status=settlement.status
            )
        expected = settlement.status
        settlement.status = SettlementStatus.dismissed.value
        settlement.set_detail(Message("settlement.dismissed", {"reason": reason}))
        settlement.reviewed_by = actor
        settlement.review_note = reason
        if not await update_settlement(settlement, expected_status=expected):
            raise ProcessingError("conflict.settlement_changed_retry")
        await add_audit(
            "settlement", settlement.id, "dismissed", actor, {"reason": reason}
        )
        return settlement


async def retry_settlement(settlement_id: str, actor: str | None) -> Settlement:
    async with money_lock():
        settlement = await get_settlement(settlement_id)
        if not settlement:
            raise LookupError("settlement not found")
        retryable = (*PAYOUT_STATUSES, *LOOKUP_STATUSES, SettlementStatus.stale.value)
        if settlement.status not in retryable:
            raise ProcessingError("conflict.nothing_to_retry", status=settlement.status)
        if settlement.status == SettlementStatus.stale.value:
            # Look it up once more now (it turns stale again on a later pass
            # if nothing is found).
            settlement.status = SettlementStatus.pending.value
            if not await update_settlement(
                settlement, expected_status=SettlementStatus.stale.value
            ):
                raise ProcessingError("conflict.settlement_changed")
        await add_audit("settlement", settlement.id, "retry", actor, {})
        return await _advance(settlement_id) or settlement


async def cancel_payout(payout_id: str, reason: str, actor: str | None) -> DcaPayment:
    """The operator gives up on a payout that can never succeed (the client
    deleted their wallet, or was removed). It reserves nothing any more.

    * A row older software left pending or failed (no settlement) is voided: it
      never moved money and this extension never pays it.
    * A payout of a settlement is cancelled only if its invoice was never paid
      (the invoice is made unpayable first). Its sats, still in the source
      wallet, become orphan sats of that settlement (added to its open orphan,
      or a new one), so the operator reconciles them like any other; the
      settlement's figures keep adding up to its amount.

    * An orphan attribution's payout is cancelled together with the
      attribution's deposit, and its orphan is open again for another
      decision (`orphan_resolution.abandon_attribution`).

    To pay the client at a new wallet instead, change the client's wallet and
    retry: a stored invoice for another wallet is never paid."""
    async with money_lock():
        payout = await get_payment(payout_id)
        if not payout:
            raise LookupError("payout not found")
        open_statuses = (PayoutStatus.pending.value, PayoutStatus.failed.value)
        if payout.status not in open_statuses:
            raise ProcessingError(
                "conflict.payout_nothing_to_cancel", status=payout.status
            )
        if payout.settlement_id is None:
            if not await compare_and_set(
                "dca_payments",
                payout.id,
                {"status": payout.status, "settlement_id": None},
                {
                    "status": PayoutStatus.cancelled.value,
                    "error": Message("payout.voided", {"reason": reason}),
                },
            ):
                raise ProcessingError("conflict.payout_changed")
            await add_audit("payout", payout.id, "voided", actor, {"reason": reason})
            return await get_payment(payout.id) or payout
        paid_by = await get_settlement(payout.settlement_id)
        if await abandon_invoice(
            payout.payment_hash,
            paid_by.wallet_id if paid_by else None,
            payout.amount_sats,
            {"payout_id": payout.id},
        ):
            await set_payout_status(payout.id, PayoutStatus.confirmed)
            raise ProcessingError("conflict.payout_paid_after_all")
        if payout.transaction_type == "orphan":
            # An orphan attribution: undone with its orphan, which opens
            # again. Imported here: orphan_resolution builds on this module.
            from .orphan_resolution import abandon_attribution

            rec = await abandon_attribution(payout, reason)
            await add_audit(
                "payout",
                payout.id,
                "cancelled",
                actor,
                {"reason": reason, "reconciliation_id": rec.id},
            )
            await add_audit(
                "reconciliation", rec.id, "attribution_abandoned", actor, {}
            )
            return await get_payment(payout.id) or payout
        settlement = await get_settlement(payout.settlement_id)
        if not settlement or not settlement.fiat_code:
            raise LookupError("settlement not found")
        rec = await get_reconciliation_by_settlement(settlement.id)
        if rec and rec.status != ReconciliationStatus.open.value:
            # Being resolved, or resolved: its amount is decided. The cancelled
            # payout's sats become an orphan of their own.
            rec = None
        await _cancel_into_orphan(payout, settlement, rec, reason)
        await add_audit("payout", payout.id, "cancelled", actor, {"reason": reason})
        if settlement.status in (
            SettlementStatus.payout_failed.value,
            SettlementStatus.scheduled.value,
        ):
            await _finish(settlement.id)
        return await get_payment(payout.id) or payout


async def _cancel_into_orphan(
    payout: DcaPayment,
    settlement: Settlement,
    rec: Reconciliation | None,
    reason: str,
) -> None:
    """Cancel the payout and move its sats and fiat to the settlement's orphan,
    all in one transaction."""
    sats, fiat = payout.amount_sats, payout.amount_fiat
    now = utc_now()
    async with transaction() as tx:
        if not await compare_and_set(
            "dca_payments",
            payout.id,
            {"status": payout.status, "payment_hash": payout.payment_hash},
            {
                "status": PayoutStatus.cancelled.value,
                "error": Message("payout.cancelled", {"reason": reason}),
            },
            tx=tx,
        ):
            raise ProcessingError("conflict.payout_changed")
        await tx.execute(
            "UPDATE satoshimachine.settlements SET "
            "orphan_sats = COALESCE(orphan_sats, 0) + :sats, "
            "orphan_fiat = COALESCE(orphan_fiat, 0) + :fiat, "
            "distributed_sats = COALESCE(distributed_sats, 0) - :sats, "
            "distributed_fiat = COALESCE(distributed_fiat, 0) - :fiat "
            "WHERE id = :id",
            {"sats": sats, "fiat": fiat, "id": settlement.id},
        )
        if rec is None:
            await tx.insert(
                "satoshimachine.reconciliations",
                Reconciliation(
                    id=urlsafe_short_hash(),
                    settlement_id=settlement.id,
                    origin=f"payout:{payout.id}",
                    orphan_sats=sats,
                    orphan_fiat=fiat,
                    fiat_code=settlement.fiat_code or "",
                    exchange_rate=settlement.exchange_rate or 0.0,
                    created_at=now,
                    updated_at=now,
                ),
            )
        else:
            result = await tx.execute(
                "UPDATE satoshimachine.reconciliations SET "
                "orphan_sats = orphan_sats + :sats, "
                "orphan_fiat = orphan_fiat + :fiat "
                "WHERE id = :id AND status = 'open'",
                {"sats": sats, "fiat": fiat, "id": rec.id},
            )
            if result.rowcount != 1:
                raise ProcessingError("conflict.orphan_changed")


async def _open_settlements(statuses: tuple[str, ...]) -> AsyncIterator[Settlement]:
    """Every settlement in `statuses`, a page at a time (never just the first
    page: 500 waiting settlements must not hide the 501st)."""
    after = ""
    while True:
        page = await get_settlements_by_status(statuses, limit=500, after_id=after)
        for settlement in page:
            yield settlement
        if len(page) < 500:
            return
        after = page[-1].id


async def resume_payouts() -> int:
    """Money in flight first: settlements planned or paying (interrupted by a
    crash, or with failed payouts to retry), and ready ones. Returns how many
    were advanced."""
    advanced = 0
    async for settlement in _open_settlements(
        (*PAYOUT_STATUSES, SettlementStatus.ready.value)
    ):
        try:
            await process_settlement(settlement.id)
            advanced += 1
        except Exception as exc:
            logger.error(f"satmachineadmin: settlement {settlement.id}: {exc}")
    return advanced


def lookup_delay(attempts: int) -> timedelta:
    """How long a waiting settlement rests after `attempts` lookups: 1, 2, 4 ...
    minutes, at most an hour (each lookup can cost a Lamassu/SSH connection)."""
    if attempts <= 0:
        return timedelta(0)
    return min(timedelta(minutes=2 ** min(attempts - 1, 10)), timedelta(hours=1))


def is_lookup_due(settlement: Settlement, now: datetime) -> bool:
    if settlement.status == SettlementStatus.pending.value:
        return True
    if not settlement.last_lookup_at:
        return True
    last = as_utc(settlement.last_lookup_at)
    return now >= last + lookup_delay(settlement.lookup_attempts)


async def look_up_waiting(
    config: LamassuConfig | None, ignore_back_off: bool = False
) -> int:
    """Settlements waiting for cash-out data, each when its back-off allows;
    those waiting longer than the configured window become `stale` for the
    operator instead of being looked up forever. Returns how many were
    looked up."""
    window = timedelta(hours=config.waiting_window_hours if config else 24)
    looked_up = 0
    now = utc_now()
    async for settlement in _open_settlements(LOOKUP_STATUSES):
        try:
            if now - as_utc(settlement.paid_at) > window:
                await _mark_stale(settlement, window)
            elif ignore_back_off or is_lookup_due(settlement, now):
                await process_settlement(settlement.id)
                looked_up += 1
        except Exception as exc:
            logger.error(f"satmachineadmin: settlement {settlement.id}: {exc}")
    return looked_up


async def _mark_stale(listed: Settlement, window: timedelta) -> None:
    hours = int(window.total_seconds() // 3600)
    async with money_lock():
        # Read again under the lock: the row listed before it may have been
        # looked up, entered by hand or dismissed since, and the whole row is
        # written back below.
        settlement = await get_settlement(listed.id)
        if not settlement or settlement.status not in LOOKUP_STATUSES:
            return
        expected = settlement.status
        settlement.status = SettlementStatus.stale.value
        settlement.set_detail(
            Message(
                "settlement.stale",
                {"hours": hours, "detail": settlement.detail() or expected},
            )
        )
        if await update_settlement(settlement, expected_status=expected):
            logger.warning(
                f"satmachineadmin: settlement {settlement.id} is stale: "
                f"{settlement.status_detail}"
            )


async def process_open_settlements() -> int:
    """Advance every unfinished settlement: payouts first, then lookups."""
    return await resume_payouts() + await look_up_waiting(await get_config())


# ---------------------------------------------------------- fixed deliveries


async def deliver_scheduled(now: datetime | None = None) -> int:
    """Pay the fixed-mode payouts whose delivery time has come, one slot per
    delivery time. A slot's key is taken first (once, ever), then its payouts
    are released to it and paid; a crash anywhere leaves the slot `claimed`,
    and the next pass finishes it, paying each payout at most once (each
    stores its invoice before paying). Returns how many payouts were paid."""
    now = now or utc_now()
    paid = 0
    async with money_lock():
        dues = {slot.id: as_utc(slot.due_at) for slot in await get_unfinished_slots()}
        for due in await get_due_delivery_times(now):
            dues.setdefault(slot_key(due), as_utc(due))
        for key, due in sorted(dues.items(), key=lambda item: item[1]):
            await claim_delivery_slot(key, due)
            crash_point("fixed_slot_claimed")
            await release_delivery_slot(key, due)
            crash_point("fixed_slot_released")
            payouts = await get_slot_payouts(key)
            settlements: dict[str, Settlement | None] = {}
            clients = {client.id: client for client in await get_clients()}
            sources = await source_wallet_ids(await get_config())
            due_now: list[tuple[Settlement, DcaPayment]] = []
            for payout in payouts:
                if not payout.settlement_id:
                    continue
                if payout.settlement_id not in settlements:
                    settlements[payout.settlement_id] = await get_settlement(
                        payout.settlement_id
                    )
                settlement = settlements[payout.settlement_id]
                if settlement and payout.status == PayoutStatus.pending.value:
                    due_now.append((settlement, payout))
            held = await _hold_uncovered(due_now)
            for settlement, payout in due_now:
                if payout.id in held:
                    continue
                client = clients.get(payout.client_id)
                if await _pay_payout(settlement, payout, client, sources):
                    paid += 1
            await finish_delivery_slot(key, len(payouts))
            crash_point("fixed_slot_done")
            # Failed deliveries leave their settlement payout_failed: retried
            # like any payout (the slot has released them).
            for settlement_id, found in settlements.items():
                if found:
                    await _finish(settlement_id)
    if paid:
        logger.info(f"satmachineadmin: {paid} fixed-mode payout(s) delivered")
    return paid


# ------------------------------------------------------------------- dry run


def dry_run(data: TestTransactionData, balances) -> Distribution:
    """How a settlement with these numbers would be split now. Moves nothing."""
    if data.raw_ticker_price is not None:
        split = split_from_ticker(
            data.amount_sats, data.fiat_amount, data.raw_ticker_price
        )
    else:
        split = split_from_commission(
            data.amount_sats,
            effective_commission(data.commission_percentage, data.discount),
        )
    return distribute(data.amount_sats, split, data.fiat_amount, balances)


__all__ = [
    "AllocationError",
    "ProcessingError",
    "dismiss_settlement",
    "dry_run",
    "enter_cash_out",
    "process_open_settlements",
    "process_settlement",
    "processing_lock",
    "record_payment",
    "repair_half_paid_invoices",
    "retry_settlement",
]
