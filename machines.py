"""Several ATMs and commission partners (#14): the database side.

* Machines: one row per device id a settlement named (or the operator added),
  with the source wallet its payments arrive in. The configured source wallet
  stays the main one; a machine may name another (its own, or shared).
* Commission recipients: exact percentages per wallet, globally (machine_id
  '') or per machine (a machine's own set overrides the global one). While no
  global set is stored, the configured commission wallet is the global 100 %
  recipient (so an install upgraded from the single commission wallet keeps
  paying it, and changing that setting keeps working as before).
* Commission payouts: each part of a settlement's commission, paid like a
  client payout (its invoice stored before it is paid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from lnbits.core.crud import get_wallet
from lnbits.core.db import db as core_db
from lnbits.core.models import Wallet
from lnbits.helpers import urlsafe_short_hash

from .commission_split import (
    CommissionSplitError,
    check_percentages,
    parse_percent,
    split_commission,
)
from .crud import (
    NO_INVOICE_HASH,
    S,
    _execute_rowcount,
    compare_and_set,
    db,
    exact_times,
    get_client_by_wallet,
    transaction,
    ts,
)
from .messages import Message, MessageError
from .models import (
    SPLIT_STATUSES,
    CommissionPart,
    CommissionPayout,
    CommissionRecipient,
    LamassuConfig,
    Machine,
    MachineFigures,
    RecipientInput,
    Settlement,
    stored_text,
    utc_now,
)

# Settlements whose split is decided (their figures count), and those still
# waiting for data or for the operator.
PLANNED = SPLIT_STATUSES
WAITING = (
    "pending",
    "waiting_data",
    "waiting_dispense",
    "flagged",
    "stale",
    "ready",
)


# ------------------------------------------------------------------- machines


async def get_machine(machine_id: str) -> Machine | None:
    return await db.fetchone(
        f"SELECT * FROM {S}.machines WHERE id = :id", {"id": machine_id}, Machine
    )


async def get_machine_by_device(device_id: str) -> Machine | None:
    return await db.fetchone(
        f"SELECT * FROM {S}.machines WHERE device_id = :d", {"d": device_id}, Machine
    )


async def get_machines() -> list[Machine]:
    return await db.fetchall(
        f"SELECT * FROM {S}.machines ORDER BY created_at, id", model=Machine
    )


async def create_machine(machine: Machine) -> bool:
    """Insert unless the device id is known. True if it was new."""
    async with transaction() as tx:
        return (
            await tx.insert(f"{S}.machines", machine, ignore_conflict="device_id") == 1
        )


async def update_machine_fields(machine_id: str, changes: dict[str, Any]) -> bool:
    """Write only these columns (and updated_at): never the whole row read
    earlier, so a source wallet another operator saved meanwhile, or the
    last_seen a settlement wrote, is not put back."""
    return await compare_and_set("machines", machine_id, {}, changes)


async def machine_seen(settlement: Settlement) -> None:
    """A settlement named its machine: a machine seen for the first time is
    listed as new (nothing waits on it); a known one gets its last seen time."""
    device_id = (settlement.device_id or "").strip()
    if not device_id:
        return
    seen = settlement.cash_out_time or settlement.paid_at
    now = utc_now()
    machine = Machine(
        id=urlsafe_short_hash(),
        device_id=device_id,
        source_wallet_id=settlement.wallet_id,
        first_seen=seen,
        last_seen=seen,
        created_at=now,
        updated_at=now,
    )
    if await create_machine(machine):
        return
    await db.execute(
        f"UPDATE {S}.machines SET last_seen = {ts('seen')} WHERE device_id = :d "
        f"AND (last_seen IS NULL OR last_seen < {ts('seen')})",
        exact_times({"seen": seen, "d": device_id}),
    )


async def machine_source_wallets() -> set[str]:
    rows = await db.fetchall(
        f"SELECT DISTINCT source_wallet_id AS w FROM {S}.machines "
        "WHERE source_wallet_id IS NOT NULL"
    )
    return {row["w"] for row in rows if row["w"]}


async def source_wallet_ids(config: LamassuConfig | None) -> set[str]:
    """Every wallet ATM settlements arrive in: the configured source wallet and
    the machines' own."""
    wallets = await machine_source_wallets()
    if config and config.source_wallet_id:
        wallets.add(config.source_wallet_id)
    return wallets


def receiving_wallet_id(wallet: Wallet) -> str:
    """The wallet a wallet's invoices are created on: itself or, for LNbits'
    share of another wallet, that other wallet. A share counts whether it is
    approved yet or not (LNbits' own `Wallet.source_wallet_id` counts approved
    shares only): an approval later must not turn a wallet this extension
    accepted into a share of a source wallet. The one spelling of it for every
    check here (client wallets, commission partners, the commission wallet,
    where an orphan is sent)."""
    return wallet.shared_wallet_id or wallet.id


async def wallet_and_its_shares(wallet_id: str) -> set[str]:
    """A wallet and LNbits' shares of it (wallets of other users whose
    invoices are created on it), approved or not yet: an approval later must
    not turn a wallet this extension accepted into a share of a source."""
    rows = await core_db.fetchall(
        "SELECT id FROM wallets WHERE shared_wallet_id = :w", {"w": wallet_id}
    )
    return {wallet_id} | {row["id"] for row in rows}


async def refuse_shares_of_source(source: str) -> None:
    """A new source wallet that LNbits shares with a client's or a commission
    partner's wallet: that wallet's invoices would be created on the source
    itself, so its payouts would pay the source from the source. Raises
    MessageError."""
    shares = await wallet_and_its_shares(source) - {source}
    for share in sorted(shares):
        if await get_client_by_wallet(share):
            raise MessageError("source.shared_with_client", wallet=share)
    for share in sorted(shares & await recipient_wallet_ids(None)):
        raise MessageError("source.shared_with_partner", wallet=share)


async def machine_of_source_wallet(
    wallet_id: str, config: LamassuConfig | None
) -> tuple[bool, str | None]:
    """Is `wallet_id` a source wallet, and of which machine if only one uses it?
    A payment into the configured (shared) source wallet names no machine until
    its cash-out data does."""
    if config and config.source_wallet_id == wallet_id:
        return True, None
    rows = await db.fetchall(
        f"SELECT device_id FROM {S}.machines WHERE source_wallet_id = :w LIMIT 2",
        {"w": wallet_id},
    )
    if not rows:
        return False, None
    return True, rows[0]["device_id"] if len(rows) == 1 else None


async def get_machine_figures() -> dict[str, MachineFigures]:
    """Per device id ('' for settlements that name none): settled, commission
    and distributed sats of the settlements split so far, their open orphans,
    and how many settlements wait for data or for the operator."""
    planned = ", ".join(f"'{s}'" for s in PLANNED)
    waiting = ", ".join(f"'{s}'" for s in WAITING)
    rows = await db.fetchall(f"""
        SELECT COALESCE(device_id, '') AS device_id,
            SUM(CASE WHEN status IN ({planned}) THEN 1 ELSE 0 END) AS n,
            SUM(CASE WHEN status IN ({planned}) THEN amount_sats ELSE 0 END)
                AS settled,
            SUM(CASE WHEN status IN ({planned}) THEN COALESCE(commission_sats, 0)
                ELSE 0 END) AS commission,
            SUM(CASE WHEN status IN ({planned}) THEN COALESCE(distributed_sats, 0)
                ELSE 0 END) AS distributed,
            SUM(CASE WHEN status IN ({waiting}) THEN 1 ELSE 0 END) AS waiting
        FROM {S}.settlements GROUP BY COALESCE(device_id, '')
        """)
    figures: dict[str, MachineFigures] = {}
    for row in rows:
        figures[row["device_id"]] = MachineFigures(
            settlements=int(row["n"] or 0),
            settled_sats=int(row["settled"] or 0),
            commission_sats=int(row["commission"] or 0),
            distributed_sats=int(row["distributed"] or 0),
            waiting=int(row["waiting"] or 0),
        )
    orphans = await db.fetchall(f"""
        SELECT COALESCE(s.device_id, '') AS device_id,
            SUM(r.orphan_sats) AS sats
        FROM {S}.reconciliations r JOIN {S}.settlements s ON s.id = r.settlement_id
        WHERE r.status <> 'resolved' GROUP BY COALESCE(s.device_id, '')
        """)
    for row in orphans:
        entry = figures.setdefault(row["device_id"], MachineFigures())
        entry.open_orphan_sats = int(row["sats"] or 0)
    return figures


# ----------------------------------------------------------- commission recipients


@dataclass(frozen=True)
class Recipient:
    """A recipient as a split uses it: from a stored set, or the configured
    commission wallet (recipient_id None)."""

    recipient_id: str | None
    wallet_id: str
    percent: Decimal
    label: str | None


async def get_recipients(machine_id: str = "") -> list[CommissionRecipient]:
    return await db.fetchall(
        f"SELECT * FROM {S}.commission_recipients WHERE machine_id = :m "
        "ORDER BY position, id",
        {"m": machine_id},
        CommissionRecipient,
    )


async def get_all_machine_recipients() -> dict[str, list[CommissionRecipient]]:
    rows = await db.fetchall(
        f"SELECT * FROM {S}.commission_recipients WHERE machine_id <> '' "
        "ORDER BY machine_id, position, id",
        model=CommissionRecipient,
    )
    sets: dict[str, list[CommissionRecipient]] = {}
    for row in rows:
        sets.setdefault(row.machine_id, []).append(row)
    return sets


def _as_recipients(rows: Sequence[CommissionRecipient]) -> list[Recipient]:
    return [
        Recipient(row.id, row.wallet_id, Decimal(row.percent), row.label)
        for row in rows
    ]


async def global_recipients(config: LamassuConfig | None) -> list[Recipient]:
    rows = await get_recipients("")
    if rows:
        return _as_recipients(rows)
    if config and config.commission_wallet_id:
        return [Recipient(None, config.commission_wallet_id, Decimal(100), None)]
    return []


async def recipients_for(
    device_id: str | None, config: LamassuConfig | None
) -> list[Recipient]:
    """The recipients of a settlement of this machine: the machine's own set,
    else the global one."""
    device_id = (device_id or "").strip()
    if device_id:
        rows = await db.fetchall(
            f"SELECT r.* FROM {S}.commission_recipients r "
            f"JOIN {S}.machines m ON m.id = r.machine_id "
            "WHERE m.device_id = :d ORDER BY r.position, r.id",
            {"d": device_id},
            CommissionRecipient,
        )
        if rows:
            return _as_recipients(rows)
    return await global_recipients(config)


async def recipient_wallet_ids(config: LamassuConfig | None) -> set[str]:
    """Every wallet that receives commission: stored sets and the configured
    commission wallet."""
    rows = await db.fetchall(
        f"SELECT DISTINCT wallet_id FROM {S}.commission_recipients"
    )
    wallets = {row["wallet_id"] for row in rows}
    if config and config.commission_wallet_id:
        wallets.add(config.commission_wallet_id)
    return wallets


async def validate_recipients(
    inputs: Sequence[RecipientInput], config: LamassuConfig | None
) -> list[Recipient]:
    """Exact percentages adding up to exactly 100, each wallet on this LNbits,
    not deleted, not a source wallet, and named once. Raises ValueError with a
    message for the operator."""
    if not inputs:
        return []
    recipients: list[Recipient] = []
    seen: set[str] = set()
    sources = await source_wallet_ids(config)
    for i, item in enumerate(inputs, start=1):
        try:
            percent = parse_percent(item.percent)
        except CommissionSplitError as exc:
            raise MessageError("recipients.item", index=i, error=exc.message) from exc
        if item.wallet_id in seen:
            raise MessageError(
                "recipients.wallet_twice", index=i, wallet_id=item.wallet_id
            )
        seen.add(item.wallet_id)
        wallet = await get_wallet(item.wallet_id)
        if not wallet or wallet.deleted:
            raise MessageError(
                "recipients.wallet_not_found", index=i, wallet_id=item.wallet_id
            )
        if item.wallet_id in sources:
            raise MessageError(
                "recipients.source_wallet", index=i, wallet_id=item.wallet_id
            )
        receives_into = receiving_wallet_id(wallet)
        if receives_into != item.wallet_id and receives_into in sources:
            # LNbits' share of a source wallet: its invoices are the source's.
            raise MessageError(
                "recipients.share_of_source",
                index=i,
                wallet_id=item.wallet_id,
                source=receives_into,
            )
        label = (item.label or "").strip() or None
        recipients.append(Recipient(None, item.wallet_id, percent, label))
    check_percentages([r.percent for r in recipients])  # CommissionSplitError
    return recipients


async def replace_recipients(machine_id: str, recipients: Sequence[Recipient]) -> None:
    """The whole set at once, in one transaction."""
    now = utc_now()
    async with transaction() as tx:
        await tx.execute(
            f"DELETE FROM {S}.commission_recipients WHERE machine_id = :m",
            {"m": machine_id},
        )
        for position, recipient in enumerate(recipients):
            await tx.insert(
                f"{S}.commission_recipients",
                CommissionRecipient(
                    id=urlsafe_short_hash(),
                    machine_id=machine_id,
                    wallet_id=recipient.wallet_id,
                    percent=f"{recipient.percent:f}",
                    label=recipient.label,
                    position=position,
                    created_at=now,
                    updated_at=now,
                ),
            )


# ------------------------------------------------------------- commission parts


def commission_parts(
    commission_sats: int, recipients: Sequence[Recipient]
) -> list[tuple[Recipient, int]]:
    """The split of a commission among recipients (commission_split.py)."""
    if not recipients:
        return []
    sats = split_commission(commission_sats, [r.percent for r in recipients])
    return list(zip(recipients, sats, strict=True))


def dry_run_parts(
    commission_sats: int, recipients: Sequence[Recipient]
) -> list[CommissionPart]:
    return [
        CommissionPart(
            wallet_id=r.wallet_id, label=r.label, percent=f"{r.percent:f}", sats=sats
        )
        for r, sats in commission_parts(commission_sats, recipients)
    ]


def commission_payout_rows(
    settlement: Settlement, recipients: Sequence[Recipient], now: datetime
) -> list[CommissionPayout]:
    """The commission payout rows a split writes. A part of 0 sats, or one to
    the settlement's own source wallet, is `kept`: nothing to move."""
    rows = []
    for position, (recipient, sats) in enumerate(
        commission_parts(settlement.commission_sats or 0, recipients)
    ):
        kept = sats <= 0 or recipient.wallet_id == settlement.wallet_id
        rows.append(
            CommissionPayout(
                id=urlsafe_short_hash(),
                settlement_id=settlement.id,
                position=position,
                recipient_id=recipient.recipient_id,
                wallet_id=recipient.wallet_id,
                label=recipient.label,
                percent=f"{recipient.percent:f}",
                amount_sats=sats,
                status="kept" if kept else "pending",
                created_at=now,
                updated_at=now,
            )
        )
    return rows


async def get_commission_payouts(settlement_id: str) -> list[CommissionPayout]:
    return await db.fetchall(
        f"SELECT * FROM {S}.commission_payouts WHERE settlement_id = :sid "
        "ORDER BY position",
        {"sid": settlement_id},
        CommissionPayout,
    )


async def get_recent_commission_payouts(
    status: str | None, limit: int
) -> list[CommissionPayout]:
    where = "WHERE status = :status" if status else ""
    return await db.fetchall(
        f"SELECT * FROM {S}.commission_payouts {where} "
        "ORDER BY created_at DESC, id LIMIT :limit",
        {"status": status, "limit": limit},
        CommissionPayout,
    )


async def get_commission_payout(payout_id: str) -> CommissionPayout | None:
    return await db.fetchone(
        f"SELECT * FROM {S}.commission_payouts WHERE id = :id",
        {"id": payout_id},
        CommissionPayout,
    )


async def set_commission_invoice(
    payout_id: str, bolt11: str, payment_hash: str, replacing: str | None
) -> bool:
    """Remember the invoice before paying it (compare-and-set, as for clients)."""
    guard = "payment_hash = :old" if replacing else NO_INVOICE_HASH
    return (
        await _execute_rowcount(
            f"UPDATE {S}.commission_payouts SET bolt11 = :bolt11, "
            f"payment_hash = :hash, updated_at = {ts('now')} "
            f"WHERE id = :id AND {guard}",
            {
                "id": payout_id,
                "bolt11": bolt11,
                "hash": payment_hash,
                "old": replacing,
                "now": utc_now(),
            },
        )
        == 1
    )


async def set_commission_status(
    payout_id: str,
    status: str,
    error: Message | str | None = None,
    expected: Sequence[str] = ("pending", "failed"),
    changes: dict[str, Any] | None = None,
) -> bool:
    english, message = stored_text(error)
    values: dict[str, Any] = {
        "id": payout_id,
        "status": status,
        "error": english,
        "error_msg": message,
        "now": utc_now(),
    }
    values.update({f"e{i}": e for i, e in enumerate(expected)})
    placeholders = ", ".join(f":e{i}" for i in range(len(expected)))
    sets = ""
    for key, value in (changes or {}).items():
        sets += f", {key} = :x_{key}"
        values[f"x_{key}"] = value
    return (
        await _execute_rowcount(
            f"UPDATE {S}.commission_payouts SET status = :status, error = :error, "
            "error_msg = :error_msg, attempts = attempts + 1, "
            f"updated_at = {ts('now')}{sets} "
            f"WHERE id = :id AND status IN ({placeholders})",
            values,
        )
        == 1
    )


async def redirect_commission_payout(
    payout_id: str, old_wallet: str, new_wallet: str
) -> bool:
    """Point an unpaid part at another wallet (compare-and-set on the old one)."""
    return (
        await _execute_rowcount(
            f"UPDATE {S}.commission_payouts SET wallet_id = :new, "
            "status = 'pending', error = NULL, error_msg = NULL, "
            f"updated_at = {ts('now')} "
            "WHERE id = :id AND wallet_id = :old AND status IN ('pending', 'failed')",
            {"id": payout_id, "old": old_wallet, "new": new_wallet, "now": utc_now()},
        )
        == 1
    )


async def update_commission_summary(settlement_id: str) -> None:
    """The settlement's commission status from its parts, in one statement
    (so two runs finishing parts at once still end on the right one)."""
    parts = f"{S}.commission_payouts p WHERE p.settlement_id = :id"
    await db.execute(
        f"""
        UPDATE {S}.settlements SET commission_status = CASE
            WHEN EXISTS (SELECT 1 FROM {parts} AND p.status = 'failed')
                THEN 'failed'
            WHEN EXISTS (SELECT 1 FROM {parts} AND p.status = 'pending')
                THEN 'pending'
            WHEN EXISTS (SELECT 1 FROM {parts} AND p.status = 'confirmed')
                THEN 'confirmed'
            ELSE 'kept' END,
        commission_error = (SELECT p.error FROM {parts} AND p.status = 'failed'
            ORDER BY p.position LIMIT 1)
        WHERE id = :id AND EXISTS (SELECT 1 FROM {parts})
        """,
        {"id": settlement_id},
    )
