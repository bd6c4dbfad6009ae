"""Database access for the `satoshimachine` schema. No business rules here:
the transaction processor decides, this module reads and writes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from lnbits.db import Connection, Database, Filters, Page, insert_query, model_to_dict
from lnbits.helpers import urlsafe_short_hash
from sqlalchemy import event, text

from .allocation import ClientBalance, to_fiat
from .fixed_mode import FixedDay, fixed_day, remaining_allowance
from .messages import Message
from .models import (
    SPLIT_STATUSES,
    Alert,
    AlertSettings,
    AuditEntry,
    ClientBalanceSummary,
    ClientSummary,
    DcaClient,
    DcaDeposit,
    DcaPayment,
    DeliverAfterRow,
    DeliverySlot,
    DepositView,
    DistributedRow,
    DistributionView,
    LamassuConfig,
    PayoutStatus,
    PayoutView,
    Reconciliation,
    ReconciliationView,
    Settlement,
    SettlementView,
    TransactionView,
    audit_details_text,
    client_attention,
    finite_fiat,
    stored_text,
    utc_now,
)

db = Database("ext_satoshimachine")


# One representation for every timestamp this extension writes and compares:
# UTC, to the microsecond.
# * PostgreSQL: rows written from models hold naive UTC, while `to_timestamp()`
#   (LNbits' timestamp placeholder) converts to the *session* time zone, so on
#   a server set to America/Guatemala the two disagreed by six hours. Every
#   session of this extension's engine runs in UTC.
# * SQLite: LNbits binds datetime parameters as whole seconds, while models
#   store fractional epochs; `exact_times` binds them as fractional epochs.
if db.type != "SQLITE":

    @event.listens_for(db.engine.sync_engine, "connect")
    def _session_in_utc(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET TIME ZONE 'UTC'")
        cursor.close()


def exact_times(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value.timestamp() if isinstance(value, datetime) else value
        for key, value in values.items()
    }


class StableFilters(Filters):
    """LNbits' Filters with the row id as the last sort key: rows that tie on
    the sort field (SQLite keeps timestamps to the second; payouts of one
    settlement share theirs) then come in one order on every page, so paging
    through a list (the CSV exports do) neither repeats nor skips a row."""

    def order_by(self) -> str:
        order = super().order_by()
        return f"{order}, id {self.direction or 'asc'}" if order else "ORDER BY id"


S = "satoshimachine"

# models.SPLIT_STATUSES as an SQL IN list ('distributing', 'completed', ...):
# fixed enum values, never user input, so spelled inline like the schema name.
SPLIT_IN = ", ".join(f"'{status}'" for status in SPLIT_STATUSES)

# SQLite has no decimal type and sqlite3 cannot bind Decimal. Bind it as text:
# SQLite's column affinity stores "7.54" as the number 7.54, and every read goes
# back through to_fiat(), which quantizes to cents, so no cent is ever lost.
sqlite3.register_adapter(Decimal, str)

# What a payout takes from a client's balance, as SQL over `dca_payments`:
# paid (confirmed: the client extension counts exactly these), plus reserved:
# this extension's own unfinished payouts (tied to a settlement, pending or
# failed and retryable). Rows older software left pending or failed (no
# settlement) reserve nothing, so the balance the operator sees is the one the
# client's dashboard shows; cancelled payouts take nothing.
RESERVED_PAYOUT_SQL = "(status IN ('pending', 'failed') AND settlement_id IS NOT NULL)"
SPENT_PAYOUT_SQL = f"(status = 'confirmed' OR {RESERVED_PAYOUT_SQL})"


def ts(key: str) -> str:
    """A timestamp parameter that works on both backends."""
    return db.timestamp_placeholder(key)


class Tx:
    """Several statements committed together (or not at all).

    `Connection.execute` commits after every statement; this runs statements on
    the underlying SQLAlchemy connection and commits once, so a crash in the
    middle leaves nothing half-written."""

    def __init__(self, conn: Connection):
        self.conn = conn

    async def execute(self, query: str, values: dict | None = None) -> Any:
        params = self.conn.rewrite_values(exact_times(values)) if values else {}
        return await self.conn.conn.execute(
            text(self.conn.rewrite_query(query)), params
        )

    async def execute_exact(self, query: str, values: dict[str, Any]) -> Any:
        """execute() without LNbits' HTML stripping of string parameters
        (`<...>`, `&name;`): the text is written, and compared, exactly as
        given, as db.insert and db.update (which do not strip) stored it."""
        return await self.conn.conn.execute(
            text(self.conn.rewrite_query(query)), exact_times(values)
        )

    async def insert(self, table: str, model: Any, ignore_conflict: str = "") -> int:
        query = insert_query(table, model)
        if ignore_conflict:
            query += f" ON CONFLICT ({ignore_conflict}) DO NOTHING"
        result = await self.conn.conn.execute(text(query), model_to_dict(model))
        return result.rowcount


@asynccontextmanager
async def transaction() -> AsyncIterator[Tx]:
    async with db.connect() as conn:
        tx = Tx(conn)
        try:
            yield tx
        except BaseException:
            await conn.conn.rollback()
            raise
        await conn.conn.commit()


async def _execute_rowcount(query: str, values: dict) -> int:
    result = await db.execute(query, exact_times(values))
    return result.rowcount


async def _execute_exact_rowcount(query: str, values: dict) -> int:
    """_execute_rowcount without LNbits' HTML stripping (Tx.execute_exact):
    for a guard comparing a column with the value read from it (a stripped
    "<A-17>" never equals the stored one) and for fields saved as typed."""
    async with transaction() as tx:
        result = await tx.execute_exact(query, values)
        return result.rowcount


# -------------------------------------------------------------------------- config


async def get_config() -> LamassuConfig | None:
    """The active configuration (the old extension allowed several rows and used
    the newest active one; so do we)."""
    return await db.fetchone(
        f"SELECT * FROM {S}.lamassu_config WHERE is_active = :active "
        "ORDER BY created_at DESC LIMIT 1",
        {"active": True},
        LamassuConfig,
    )


async def get_config_by_id(config_id: str) -> LamassuConfig | None:
    return await db.fetchone(
        f"SELECT * FROM {S}.lamassu_config WHERE id = :id",
        {"id": config_id},
        LamassuConfig,
    )


async def create_config(fields: dict) -> LamassuConfig:
    """Insert a new active config, deactivating older ones (only one is active)."""
    now = utc_now()
    config = LamassuConfig(id=urlsafe_short_hash(), created_at=now, updated_at=now)
    config = config.copy(update={k: v for k, v in fields.items() if v is not None})
    async with transaction() as tx:
        await tx.execute(
            f"UPDATE {S}.lamassu_config SET is_active = :inactive",
            {"inactive": False},
        )
        await tx.insert(f"{S}.lamassu_config", config)
    return config


async def update_config(config: LamassuConfig) -> LamassuConfig:
    config.updated_at = utc_now()
    await db.update(f"{S}.lamassu_config", config)
    return config


async def update_config_fields(
    config_id: str, changes: dict[str, Any], expect: dict[str, Any] | None = None
) -> bool:
    """Write only these columns (and updated_at), never the whole row read
    earlier (see update_client_fields); with `expect` only if those columns
    still hold those values."""
    return await compare_and_set("lamassu_config", config_id, expect or {}, changes)


async def delete_config(config_id: str) -> None:
    await db.execute(
        f"DELETE FROM {S}.lamassu_config WHERE id = :id", {"id": config_id}
    )


async def set_config_timestamps(config_id: str, **fields: datetime | bool) -> None:
    """Update poll/test bookkeeping columns without touching anything else."""
    allowed = {
        "test_connection_last",
        "test_connection_success",
        "last_poll_time",
        "last_successful_poll",
        "scan_checkpoint",
    }
    sets = []
    values: dict[str, Any] = {"id": config_id}
    for key, value in fields.items():
        if key not in allowed:
            raise ValueError(key)
        sets.append(f"{key} = {ts(key) if isinstance(value, datetime) else ':' + key}")
        values[key] = value
    await db.execute(
        f"UPDATE {S}.lamassu_config SET {', '.join(sets)} WHERE id = :id",
        exact_times(values),
    )


# ------------------------------------------------------------------------- clients


async def create_client(client: DcaClient) -> DcaClient:
    await db.insert(f"{S}.dca_clients", client)
    return client


async def get_client(client_id: str) -> DcaClient | None:
    return await db.fetchone(
        f"SELECT * FROM {S}.dca_clients WHERE id = :id", {"id": client_id}, DcaClient
    )


# Ids per `IN (...)` list: far below SQLite's bound-parameter limit (999 in
# older builds), whatever the number of clients.
IDS_PER_QUERY = 500


async def get_clients_by_ids(client_ids: Iterable[str]) -> dict[str, DcaClient]:
    """The clients with these ids (unknown ids are left out), in one query per
    IDS_PER_QUERY ids instead of one per client."""
    ids = sorted(set(client_ids))
    found: dict[str, DcaClient] = {}
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = ids[start : start + IDS_PER_QUERY]
        values = {f"c{i}": client_id for i, client_id in enumerate(chunk)}
        placeholders = ", ".join(f":{key}" for key in values)
        rows = await db.fetchall(
            f"SELECT * FROM {S}.dca_clients WHERE id IN ({placeholders})",
            values,
            DcaClient,
        )
        found.update((client.id, client) for client in rows)
    return found


async def get_client_by_wallet(wallet_id: str) -> DcaClient | None:
    return await db.fetchone(
        f"SELECT * FROM {S}.dca_clients WHERE wallet_id = :wallet_id",
        {"wallet_id": wallet_id},
        DcaClient,
    )


async def get_clients() -> list[DcaClient]:
    return await db.fetchall(
        f"SELECT * FROM {S}.dca_clients ORDER BY created_at", model=DcaClient
    )


async def update_client_fields(
    client_id: str, changes: dict[str, Any], expect: dict[str, Any] | None = None
) -> DcaClient | None:
    """Write only the columns in `changes` (and updated_at), with `expect` only
    if those columns still hold those values; returns the row as it is now,
    None if it was not written. Never the whole row read earlier: the client
    extension and other requests write the same row (a status, a daily limit)
    between an endpoint's read and its write, and a whole-row write would put
    their old values back."""
    if not await compare_and_set("dca_clients", client_id, expect or {}, changes):
        return None
    return await get_client(client_id)


def _client_figures_sql(id_params: str | None = None) -> str:
    """Clients with their deposit and payout sums in their main currency (the
    one their pending or confirmed deposits are in; the highest code when there
    are several: every currency's figures are in `get_currency_figures`; when
    every deposit is cancelled, the currency of their payouts, so what was
    paid and what a held payout reserves still show).
    With `id_params` (a list of placeholders) only those clients' rows are
    read and summed."""
    only = f"WHERE client_id IN ({id_params})" if id_params else ""
    return f"""
    SELECT c.*,
        COALESCE(cur.currency, paid_in.currency) AS currency,
        COALESCE(d.confirmed, 0) AS confirmed_deposits,
        COALESCE(d.pending, 0) AS pending_deposits,
        COALESCE(p.paid_fiat, 0) AS distributed_fiat,
        COALESCE(p.paid_sats, 0) AS distributed_sats,
        COALESCE(p.reserved_fiat, 0) AS reserved_fiat,
        COALESCE(d.confirmed, 0) - COALESCE(p.paid_fiat, 0)
            - COALESCE(p.reserved_fiat, 0) AS remaining_balance
    FROM {S}.dca_clients c
    LEFT JOIN (
        SELECT client_id,
            MAX(CASE WHEN status <> 'cancelled' THEN currency END) AS currency
        FROM {S}.dca_deposits {only} GROUP BY client_id
    ) cur ON cur.client_id = c.id
    LEFT JOIN (
        SELECT client_id,
            MAX(CASE WHEN status <> 'cancelled' THEN currency END) AS currency
        FROM {S}.dca_payments {only} GROUP BY client_id
    ) paid_in ON paid_in.client_id = c.id
    LEFT JOIN ({_deposit_sums_sql(only)}) d
        ON d.client_id = c.id
        AND d.currency = COALESCE(cur.currency, paid_in.currency)
    LEFT JOIN ({_payout_sums_sql(only)}) p
        ON p.client_id = c.id
        AND p.currency = COALESCE(cur.currency, paid_in.currency)
    {f"WHERE c.id IN ({id_params})" if id_params else ""}
"""


def _deposit_sums_sql(where: str) -> str:
    return f"""
        SELECT client_id, currency,
            SUM(CASE WHEN status = 'confirmed' THEN amount ELSE 0 END) AS confirmed,
            SUM(CASE WHEN status = 'pending' THEN amount ELSE 0 END) AS pending
        FROM {S}.dca_deposits {where} GROUP BY client_id, currency"""


def _payout_sums_sql(where: str) -> str:
    return f"""
        SELECT client_id, currency,
            SUM(CASE WHEN status = 'confirmed' THEN amount_fiat ELSE 0 END)
                AS paid_fiat,
            SUM(CASE WHEN status = 'confirmed' THEN amount_sats ELSE 0 END)
                AS paid_sats,
            SUM(CASE WHEN {RESERVED_PAYOUT_SQL} THEN amount_fiat ELSE 0 END)
                AS reserved_fiat
        FROM {S}.dca_payments {where} GROUP BY client_id, currency"""


async def get_currency_figures(client_ids: Sequence[str]) -> dict[str, list[dict]]:
    """Every client's figures per currency (deposits and payouts in one
    currency are never mixed), in two aggregate queries for all of them."""
    figures: dict[tuple[str, str], dict] = {}

    def entry(client_id: str, currency: str) -> dict:
        return figures.setdefault(
            (client_id, currency),
            {
                "currency": currency,
                "confirmed_deposits": Decimal("0.00"),
                "pending_deposits": Decimal("0.00"),
                "distributed_fiat": Decimal("0.00"),
                "distributed_sats": 0,
                "reserved_fiat": Decimal("0.00"),
            },
        )

    # IDS_PER_QUERY ids per query: every client (the alert check asks for
    # all of them) within the databases' bound-parameter limits.
    for start in range(0, len(client_ids), IDS_PER_QUERY):
        chunk = client_ids[start : start + IDS_PER_QUERY]
        values = {f"id{i}": cid for i, cid in enumerate(chunk)}
        where = f"WHERE client_id IN ({', '.join(':' + k for k in values)})"
        for row in await db.fetchall(_deposit_sums_sql(where), values):
            e = entry(row["client_id"], row["currency"])
            e["confirmed_deposits"] = to_fiat(row["confirmed"] or 0)
            e["pending_deposits"] = to_fiat(row["pending"] or 0)
        for row in await db.fetchall(_payout_sums_sql(where), values):
            e = entry(row["client_id"], row["currency"] or "GTQ")
            e["distributed_fiat"] = to_fiat(row["paid_fiat"] or 0)
            e["distributed_sats"] = int(row["paid_sats"] or 0)
            e["reserved_fiat"] = to_fiat(row["reserved_fiat"] or 0)
    result: dict[str, list[dict]] = {}
    for (client_id, _), e in sorted(figures.items()):
        e["remaining_balance"] = (
            e["confirmed_deposits"] - e["distributed_fiat"] - e["reserved_fiat"]
        )
        result.setdefault(client_id, []).append(e)
    return result


# Sorting by these needs every client's figures before a page can be cut.
_FIGURE_SORTS = {
    "confirmed_deposits",
    "distributed_fiat",
    "distributed_sats",
    "remaining_balance",
}


def _with_remaining(summary: ClientSummary) -> ClientSummary:
    summary.attention = client_attention(summary)
    summary.is_new = summary.reviewed_at is None
    summary.confirmed_deposits = to_fiat(summary.confirmed_deposits)
    summary.pending_deposits = to_fiat(summary.pending_deposits)
    summary.distributed_fiat = to_fiat(summary.distributed_fiat)
    summary.reserved_fiat = to_fiat(summary.reserved_fiat)
    summary.remaining_balance = (
        summary.confirmed_deposits - summary.distributed_fiat - summary.reserved_fiat
    )
    return summary


async def get_client_summaries(
    filters: Filters | None = None,
) -> Page[ClientSummary]:
    """A page of clients with their figures, one query for the whole page
    (not one per client). For a limited page not sorted by a figure, the
    clients are paged first and only their deposits and payouts are summed,
    so the page stays fast however many payouts there are."""
    if not filters or not filters.limit or filters.sortby in _FIGURE_SORTS:
        page = await db.fetch_page(
            f"SELECT * FROM ({_client_figures_sql()}) AS figures",
            filters=filters,
            model=ClientSummary,
        )
        page.data = [_with_remaining(s) for s in page.data]
        await _attach_currency_figures(page.data)
        return page
    clients = await db.fetch_page(
        f"SELECT * FROM {S}.dca_clients", filters=filters, model=DcaClient
    )
    if not clients.data:
        return Page(data=[], total=clients.total)
    ids = {f"client_{i}": client.id for i, client in enumerate(clients.data)}
    rows = await db.fetchall(
        _client_figures_sql(", ".join(f":{name}" for name in ids)),
        ids,
        ClientSummary,
    )
    by_id = {row.id: row for row in rows}
    data = [_with_remaining(by_id[c.id]) for c in clients.data if c.id in by_id]
    await _attach_currency_figures(data)
    return Page(data=data, total=clients.total)


async def _attach_currency_figures(summaries: list[ClientSummary]) -> None:
    figures = await get_currency_figures([s.id for s in summaries])
    for summary in summaries:
        summary.balances = figures.get(summary.id, [])
    await _attach_fixed_figures(summaries)


async def _attach_fixed_figures(summaries: list[ClientSummary]) -> None:
    """Today's allowance used and left, for the fixed-mode clients."""
    fixed_clients = [s for s in summaries if s.dca_mode == "fixed"]
    if not fixed_clients:
        return
    fixed = fixed_day(await get_config(), utc_now())
    used = await get_fixed_used_today([s.id for s in fixed_clients], fixed)
    for summary in fixed_clients:
        summary.fixed_limit_currency = fixed.currency
        summary.fixed_used_today = used.get(summary.id, Decimal("0.00"))
        if summary.fixed_mode_daily_limit:
            summary.fixed_allowance_left = remaining_allowance(
                to_fiat(summary.fixed_mode_daily_limit),
                fixed.maximum,
                summary.fixed_used_today,
            )


async def get_client_summary(client_id: str) -> ClientSummary | None:
    row = await db.fetchone(
        _client_figures_sql(":id"), {"id": client_id}, ClientSummary
    )
    if not row:
        return None
    summary = _with_remaining(row)
    await _attach_currency_figures([summary])
    return summary


async def get_client_balance_summary(client_id: str) -> ClientBalanceSummary | None:
    summary = await get_client_summary(client_id)
    if not summary:
        return None
    return ClientBalanceSummary(
        client_id=client_id,
        total_deposits=summary.confirmed_deposits,
        total_payments=summary.distributed_fiat,
        reserved_fiat=summary.reserved_fiat,
        remaining_balance=summary.remaining_balance,
        total_sats=summary.distributed_sats,
        currency=summary.currency or "GTQ",
    )


async def get_flow_balances(
    conn: Connection | Tx,
    currency: str,
    as_of: datetime,
    exclude_settlement_id: str | None = None,
    source_wallets: Collection[str] = (),
    fixed: FixedDay | None = None,
) -> list[ClientBalance]:
    """Remaining balances of the active flow-mode clients in `currency`, as of a
    settlement time, in one aggregate query.

    Deposits count if confirmed at or before `as_of`. Payouts in `currency`
    are subtracted whatever their time, if paid or reserved (SPENT_PAYOUT_SQL):
    fiat already promised to another settlement is never promised twice, even
    when an earlier settlement is processed after a later one.

    With `fixed` (and `currency` its limit currency) the active fixed-mode
    clients with a daily limit take part too, each with a cap: its limit (at
    most the operator's maximum) less the fiat of its fixed payouts, paid or
    reserved, whose time falls in the operator's day of the settlement."""
    with_fixed = fixed is not None and fixed.currency == currency
    source_values = {f"src{i}": w for i, w in enumerate(sorted(source_wallets))}
    source_values = source_values or {"src0": ""}
    sources = ", ".join(f":{key}" for key in source_values)
    modes = "('flow', 'fixed')" if with_fixed else "('flow')"
    used_today = (
        f"""
        LEFT JOIN (
            SELECT client_id, SUM(amount_fiat) AS total FROM {S}.dca_payments
            WHERE {SPENT_PAYOUT_SQL} AND transaction_type = 'fixed'
              AND (currency IS NULL OR UPPER(currency) = :currency)
              AND (settlement_id IS NULL OR settlement_id <> :exclude)
              AND COALESCE(transaction_time, created_at) >= {ts("day_start")}
              AND COALESCE(transaction_time, created_at) < {ts("day_end")}
            GROUP BY client_id
        ) f ON f.client_id = c.id"""
        if with_fixed
        else ""
    )
    query = f"""
        SELECT c.id AS client_id, c.dca_mode AS dca_mode,
            c.fixed_mode_daily_limit AS daily_limit,
            d.total AS deposits,
            COALESCE(p.total, 0) AS spent
            {", COALESCE(f.total, 0) AS used_today" if with_fixed else ""}
        FROM {S}.dca_clients c
        JOIN (
            SELECT client_id, SUM(amount) AS total FROM {S}.dca_deposits
            WHERE status = 'confirmed' AND currency = :currency
              AND COALESCE(confirmed_at, created_at) <= {ts("as_of")}
            GROUP BY client_id
        ) d ON d.client_id = c.id
        LEFT JOIN (
            SELECT client_id, SUM(amount_fiat) AS total FROM {S}.dca_payments
            WHERE {SPENT_PAYOUT_SQL}
              -- A payout of unknown currency (another program wrote it after
              -- m008's backfill) counts against every currency: never paid
              -- twice, at worst paid late.
              AND (currency IS NULL OR UPPER(currency) = :currency)
              AND (settlement_id IS NULL OR settlement_id <> :exclude)
            GROUP BY client_id
        ) p ON p.client_id = c.id{used_today}
        WHERE c.status = 'active' AND c.dca_mode IN {modes}
          AND c.wallet_id NOT IN ({sources})
        ORDER BY c.created_at, c.id
    """
    values = {
        "currency": currency,
        "as_of": as_of,
        "exclude": exclude_settlement_id or "",
        # A client row naming a source wallet (another program wrote it) is
        # never paid: by its own source wallet it could only be "paid" to
        # itself, and by another machine's the client would be debited for
        # sats parked in the operator's wallet.
        **source_values,
    }
    if with_fixed:
        assert fixed is not None
        values.update(day_start=fixed.start, day_end=fixed.end)
    values = exact_times(values)
    if isinstance(conn, Tx):
        result = await conn.execute(query, values)
        rows = result.mappings().all()
    else:
        rows = await conn.fetchall(query, values)
    balances = []
    for row in rows:
        deposits, spent = finite_fiat(row["deposits"]), finite_fiat(row["spent"])
        if deposits is None or spent is None:
            continue  # a row no number (other software wrote it): no balance
        remaining = deposits - spent
        if remaining <= 0:
            continue
        cap = None
        if row["dca_mode"] == "fixed":
            assert fixed is not None
            limit = finite_fiat(row["daily_limit"])
            if limit is None or limit <= 0:
                continue  # no usable limit: needs the operator (client_attention)
            cap = remaining_allowance(
                limit,
                fixed.maximum,
                to_fiat(row["used_today"]),
            )
        balances.append(ClientBalance(row["client_id"], remaining, cap))
    return balances


async def get_paid_balances(
    client_ids: Collection[str], currency: str
) -> dict[str, Decimal]:
    """Per client, its balance in `currency` as the client extension shows it:
    confirmed deposits less confirmed payouts (a payout of unknown currency
    counts against every currency, as in get_flow_balances). Reserved payouts
    are not subtracted: this is what a payout about to be paid must fit in.
    IDS_PER_QUERY ids per query, each bound once."""
    ids = sorted(set(client_ids))
    found: dict[str, Decimal] = {client_id: Decimal("0.00") for client_id in ids}
    sums = (
        f"SELECT client_id, SUM(amount) AS total FROM {S}.dca_deposits "
        "WHERE status = 'confirmed' AND currency = :currency "
        "AND client_id IN ({marks}) GROUP BY client_id",
        f"SELECT client_id, -SUM(amount_fiat) AS total FROM {S}.dca_payments "
        "WHERE status = 'confirmed' "
        "AND (currency IS NULL OR UPPER(currency) = :currency) "
        "AND client_id IN ({marks}) GROUP BY client_id",
    )
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = ids[start : start + IDS_PER_QUERY]
        values: dict[str, Any] = {f"c{i}": cid for i, cid in enumerate(chunk)}
        marks = ", ".join(f":{key}" for key in values)
        values["currency"] = currency
        for query in sums:
            for row in await db.fetchall(query.format(marks=marks), values):
                total = finite_fiat(row["total"] or 0)
                # No finite number (other software wrote the row): no balance
                # that could cover anything, whatever else there is.
                found[row["client_id"]] += (
                    total if total is not None else Decimal("-Infinity")
                )
    return {
        client_id: balance if balance.is_finite() else Decimal("0.00")
        for client_id, balance in found.items()
    }


async def get_fixed_used_today(
    client_ids: Sequence[str], fixed: FixedDay
) -> dict[str, Decimal]:
    """Per client, the fiat its fixed payouts (paid or reserved) took in the
    operator's day `fixed` describes, in the limit currency."""
    if not client_ids:
        return {}
    values: dict[str, Any] = {f"id{i}": cid for i, cid in enumerate(client_ids)}
    marks = ", ".join(f":{k}" for k in values)
    values.update(currency=fixed.currency, day_start=fixed.start, day_end=fixed.end)
    rows = await db.fetchall(
        f"SELECT client_id, SUM(amount_fiat) AS total FROM {S}.dca_payments "
        f"WHERE {SPENT_PAYOUT_SQL} AND transaction_type = 'fixed' "
        f"AND client_id IN ({marks}) "
        "AND (currency IS NULL OR UPPER(currency) = :currency) "
        f"AND COALESCE(transaction_time, created_at) >= {ts('day_start')} "
        f"AND COALESCE(transaction_time, created_at) < {ts('day_end')} "
        "GROUP BY client_id",
        exact_times(values),
    )
    return {row["client_id"]: to_fiat(row["total"] or 0) for row in rows}


# ------------------------------------------------------------- fixed deliveries


async def get_due_delivery_times(now: datetime) -> list[datetime]:
    """The delivery times that have come for scheduled payouts not yet
    released, oldest first."""
    rows = await db.fetchall(
        f"SELECT DISTINCT deliver_after FROM {S}.dca_payments "
        "WHERE deliver_after IS NOT NULL AND delivery_slot IS NULL "
        "AND status = 'pending' AND settlement_id IS NOT NULL "
        f"AND deliver_after <= {ts('now')}",
        exact_times({"now": now}),
        model=DeliverAfterRow,
    )
    return sorted(row.deliver_after for row in rows)


async def get_unfinished_slots() -> list[DeliverySlot]:
    return await db.fetchall(
        f"SELECT * FROM {S}.fixed_delivery_slots WHERE status = 'claimed' "
        "ORDER BY due_at, id",
        model=DeliverySlot,
    )


async def claim_delivery_slot(key: str, due: datetime) -> bool:
    """The slot's row, created once (its key is the primary key). True if
    this call created it."""
    async with transaction() as tx:
        return (
            await tx.insert(
                f"{S}.fixed_delivery_slots",
                DeliverySlot(id=key, due_at=due, claimed_at=utc_now()),
                ignore_conflict="id",
            )
            == 1
        )


async def release_delivery_slot(key: str, due: datetime) -> int:
    """Hand the scheduled payouts due by the slot to it (compare-and-set on
    delivery_slot IS NULL: a payout belongs to one slot only)."""
    return await _execute_rowcount(
        f"UPDATE {S}.dca_payments SET delivery_slot = :key, "
        f"updated_at = {ts('now')} "
        "WHERE deliver_after IS NOT NULL AND delivery_slot IS NULL "
        "AND status = 'pending' AND settlement_id IS NOT NULL "
        f"AND deliver_after <= {ts('due')}",
        {"key": key, "due": due, "now": utc_now()},
    )


async def get_slot_payouts(key: str) -> list[DcaPayment]:
    return await db.fetchall(
        f"SELECT * FROM {S}.dca_payments WHERE delivery_slot = :key "
        "ORDER BY created_at, id",
        {"key": key},
        DcaPayment,
    )


async def finish_delivery_slot(key: str, payouts: int) -> bool:
    """The slot is done with `payouts` released to it in all. A payout that
    joins a slot already done (scheduled for that time by a settlement the
    slot's pass had not seen yet) updates the count, not the time it was
    done."""
    return (
        await _execute_rowcount(
            f"UPDATE {S}.fixed_delivery_slots SET status = 'done', payouts = :n, "
            f"done_at = CASE WHEN status = 'claimed' THEN {ts('now')} "
            "ELSE done_at END WHERE id = :key",
            {"key": key, "n": payouts, "now": utc_now()},
        )
        == 1
    )


async def get_delivery_slots(limit: int = 50) -> list[DeliverySlot]:
    return await db.fetchall(
        f"SELECT * FROM {S}.fixed_delivery_slots ORDER BY due_at DESC, id "
        "LIMIT :limit",
        {"limit": limit},
        DeliverySlot,
    )


_SCHEDULED = (
    "p.deliver_after IS NOT NULL AND p.delivery_slot IS NULL "
    "AND p.status = 'pending' AND p.settlement_id IS NOT NULL"
)


async def get_scheduled_payouts(limit: int = 500) -> list[PayoutView]:
    """Fixed-mode payouts waiting for their delivery slot, soonest first (the
    first `limit`, to show; get_scheduled_totals counts them all)."""
    return await db.fetchall(
        f"{_PAYOUT_VIEW} WHERE {_SCHEDULED} "
        "ORDER BY p.deliver_after, p.created_at, p.id LIMIT :limit",
        {"limit": limit},
        PayoutView,
    )


async def get_scheduled_totals() -> tuple[int, int, Decimal]:
    """How many fixed-mode payouts wait for their slot, their sats and fiat:
    every one of them, however many."""
    row = await db.fetchone(
        "SELECT COUNT(*) AS n, COALESCE(SUM(p.amount_sats), 0) AS sats, "
        "COALESCE(SUM(p.amount_fiat), 0) AS fiat "
        f"FROM {S}.dca_payments p WHERE {_SCHEDULED}"
    )
    return int(row["n"]), int(row["sats"]), to_fiat(row["fiat"])


# ------------------------------------------------------------------------ deposits


async def create_deposit(deposit: DcaDeposit) -> DcaDeposit:
    await db.insert(f"{S}.dca_deposits", deposit)
    return deposit


async def get_deposit(deposit_id: str) -> DcaDeposit | None:
    return await db.fetchone(
        f"SELECT * FROM {S}.dca_deposits WHERE id = :id", {"id": deposit_id}, DcaDeposit
    )


_DEPOSIT_VIEW = f"""
    SELECT d.*, c.username AS username
    FROM {S}.dca_deposits d LEFT JOIN {S}.dca_clients c ON c.id = d.client_id
"""


async def get_deposits(
    filters: Filters | None = None,
    client_id: str | None = None,
    status: str | None = None,
) -> Page[DepositView]:
    where, values = [], {}
    if client_id:
        where.append("client_id = :client_id")
        values["client_id"] = client_id
    if status:
        where.append("status = :status")
        values["status"] = status
    return await db.fetch_page(
        f"SELECT * FROM ({_DEPOSIT_VIEW}) AS deposits",
        where=where,
        values=values,
        filters=filters,
        model=DepositView,
    )


async def get_distributed_per_day(since: datetime) -> list[dict[str, Any]]:
    """Sats distributed per (UTC) day since `since`, for the overview chart:
    two columns of the settlements in the window, summed here (the same on
    both databases)."""
    rows = await db.fetchall(
        f"SELECT paid_at, distributed_sats FROM {S}.settlements "
        f"WHERE status IN ({SPLIT_IN}) "
        f"AND distributed_sats > 0 AND paid_at >= {ts('since')}",
        exact_times({"since": since}),
        model=DistributedRow,
    )
    per_day: dict[str, int] = {}
    for row in rows:
        day = row.paid_at.date().isoformat()
        per_day[day] = per_day.get(day, 0) + row.distributed_sats
    return [{"day": day, "sats": per_day[day]} for day in sorted(per_day)]


async def update_deposit_if_status(
    deposit: DcaDeposit, expected_status: str, read: DcaDeposit | None = None
) -> bool:
    """Write the deposit only if its stored status is still `expected_status`:
    two operators confirming at once cannot both succeed. With `read` (the row
    as the caller read it), also only if its amount, currency and notes are
    still those: a confirmation or an edit made against a figure another
    request has corrected since must not put the old figure back."""
    values = {
        "id": deposit.id,
        "expected": expected_status,
        "amount": deposit.amount,
        "currency": deposit.currency,
        "status": deposit.status,
        "notes": deposit.notes,
        "confirmed_at": deposit.confirmed_at,
    }
    confirmed = ts("confirmed_at") if deposit.confirmed_at else "NULL"
    guard = ""
    if read is not None:
        values.update(read_amount=read.amount, read_currency=read.currency)
        guard = " AND amount = :read_amount AND currency = :read_currency"
        if read.notes is None:
            guard += " AND notes IS NULL"
        else:
            values["read_notes"] = read.notes
            guard += " AND notes = :read_notes"
    return (
        await _execute_exact_rowcount(
            f"UPDATE {S}.dca_deposits SET amount = :amount, currency = :currency, "
            f"status = :status, notes = :notes, confirmed_at = {confirmed} "
            f"WHERE id = :id AND status = :expected{guard}",
            values,
        )
        == 1
    )


# --------------------------------------------------------------- payments/payouts


async def get_payment(payment_id: str) -> DcaPayment | None:
    return await db.fetchone(
        f"SELECT * FROM {S}.dca_payments WHERE id = :id", {"id": payment_id}, DcaPayment
    )


_PAYOUT_VIEW = f"""
    SELECT p.*, c.username AS username, c.wallet_id AS wallet_id,
        s.device_id AS device_id, m.name AS machine_name
    FROM {S}.dca_payments p LEFT JOIN {S}.dca_clients c ON c.id = p.client_id
    LEFT JOIN {S}.settlements s ON s.id = p.settlement_id
    LEFT JOIN {S}.machines m ON m.device_id = s.device_id
"""


async def get_payments(
    filters: Filters | None = None,
    client_id: str | None = None,
    status: str | None = None,
    settlement_id: str | None = None,
) -> Page[PayoutView]:
    where, values = [], {}
    for column, value in (
        ("client_id", client_id),
        ("status", status),
        ("settlement_id", settlement_id),
    ):
        if value:
            where.append(f"{column} = :{column}")
            values[column] = value
    return await db.fetch_page(
        f"SELECT * FROM ({_PAYOUT_VIEW}) AS payouts",
        where=where,
        values=values,
        filters=filters,
        model=PayoutView,
    )


async def get_settlement_payouts(settlement_id: str) -> list[PayoutView]:
    return await db.fetchall(
        f"{_PAYOUT_VIEW} WHERE p.settlement_id = :sid ORDER BY p.created_at, p.id",
        {"sid": settlement_id},
        PayoutView,
    )


# A row with no invoice hash yet (NULL, or empty from other software): what
# remember() stores over when `replacing` is None.
NO_INVOICE_HASH = "COALESCE(payment_hash, '') = ''"


async def set_payout_invoice(
    payout_id: str, bolt11: str, payment_hash: str, replacing: str | None = None
) -> bool:
    """Remember the invoice before paying it: only over no invoice, or over the
    dead invoice `replacing` (compare-and-set, so two runs cannot both win)."""
    guard = "payment_hash = :old" if replacing else NO_INVOICE_HASH
    return (
        await _execute_rowcount(
            f"UPDATE {S}.dca_payments SET bolt11 = :bolt11, payment_hash = :hash, "
            f"updated_at = {ts('now')} WHERE id = :id AND {guard}",
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


async def set_payout_invoices(
    invoices: Sequence[tuple[str, str, str]],
) -> set[str]:
    """set_payout_invoice for many payouts (id, bolt11, payment hash) in one
    transaction, each only over no invoice. Returns the ids that were stored;
    everything is committed when this returns."""
    stored: set[str] = set()
    if not invoices:
        return stored
    now = utc_now()
    async with transaction() as tx:
        for payout_id, bolt11, payment_hash in invoices:
            result = await tx.execute(
                f"UPDATE {S}.dca_payments SET bolt11 = :bolt11, "
                f"payment_hash = :hash, updated_at = {ts('now')} "
                f"WHERE id = :id AND {NO_INVOICE_HASH} AND COALESCE(bolt11, '') = ''",
                {"id": payout_id, "bolt11": bolt11, "hash": payment_hash, "now": now},
            )
            if result.rowcount == 1:
                stored.add(payout_id)
    return stored


async def set_payout_statuses(
    outcomes: Sequence[tuple[str, PayoutStatus, Message | str | None]],
) -> None:
    """set_payout_status(..., count_attempt=True) for many payouts in one
    transaction (each only from pending or failed)."""
    if not outcomes:
        return
    now = utc_now()
    async with transaction() as tx:
        for payout_id, status, error in outcomes:
            english, message = stored_text(error)
            await tx.execute(
                f"UPDATE {S}.dca_payments SET status = :status, error = :error, "
                f"error_msg = :error_msg, updated_at = {ts('now')}, "
                "attempts = attempts + 1 "
                "WHERE id = :id AND status IN ('pending', 'failed')",
                {
                    "id": payout_id,
                    "status": status.value,
                    "error": english,
                    "error_msg": message,
                    "now": now,
                },
            )


async def set_payout_status(
    payout_id: str,
    status: PayoutStatus,
    error: Message | str | None = None,
    expected: Sequence[str] = ("pending", "failed"),
    count_attempt: bool = False,
) -> bool:
    """`error`: English in `error`, the message in `error_msg` (m017)."""
    placeholders = ", ".join(f":e{i}" for i in range(len(expected)))
    english, message = stored_text(error)
    values: dict[str, Any] = {
        "id": payout_id,
        "status": status.value,
        "error": english,
        "error_msg": message,
        "now": utc_now(),
    }
    values.update({f"e{i}": e for i, e in enumerate(expected)})
    attempt = ", attempts = attempts + 1" if count_attempt else ""
    return (
        await _execute_rowcount(
            f"UPDATE {S}.dca_payments SET status = :status, error = :error, "
            f"error_msg = :error_msg, updated_at = {ts('now')}{attempt} "
            f"WHERE id = :id AND status IN ({placeholders})",
            values,
        )
        == 1
    )


# --------------------------------------------------------------------- settlements


async def insert_settlement_if_new(settlement: Settlement) -> bool:
    """The UNIQUE payment hash is the lock: True only for the first caller."""
    async with transaction() as tx:
        return (
            await tx.insert(
                f"{S}.settlements", settlement, ignore_conflict="payment_hash"
            )
            == 1
        )


async def get_settlement(settlement_id: str) -> Settlement | None:
    return await db.fetchone(
        f"SELECT * FROM {S}.settlements WHERE id = :id",
        {"id": settlement_id},
        Settlement,
    )


async def get_settlement_by_hash(payment_hash: str) -> Settlement | None:
    return await db.fetchone(
        f"SELECT * FROM {S}.settlements WHERE payment_hash = :hash",
        {"hash": payment_hash},
        Settlement,
    )


async def settlement_wallet_ids() -> set[str]:
    """Every wallet a settlement arrived in (and was paid out from), whether
    or not the configuration still names it a source."""
    rows = await db.fetchall(f"SELECT DISTINCT wallet_id AS w FROM {S}.settlements")
    return {row["w"] for row in rows if row["w"]}


async def get_known_payment_hashes(payment_hashes: Sequence[str]) -> set[str]:
    """Which of these payment hashes have a settlement (IDS_PER_QUERY per
    query: the poll and the scan may ask about thousands)."""
    known: set[str] = set()
    for start in range(0, len(payment_hashes), IDS_PER_QUERY):
        chunk = payment_hashes[start : start + IDS_PER_QUERY]
        values = {f"h{i}": h for i, h in enumerate(chunk)}
        placeholders = ", ".join(f":{k}" for k in values)
        rows = await db.fetchall(
            f"SELECT payment_hash FROM {S}.settlements "
            f"WHERE payment_hash IN ({placeholders})",
            values,
        )
        known.update(row["payment_hash"] for row in rows)
    return known


_SETTLEMENT_VIEW = f"""
    SELECT s.*, m.name AS machine_name FROM {S}.settlements s
    LEFT JOIN {S}.machines m ON m.device_id = s.device_id
"""


async def get_settlements(
    filters: Filters | None = None, status: str | None = None
) -> Page[SettlementView]:
    where, values = [], {}
    if status:
        where.append("status = :status")
        values["status"] = status
    return await db.fetch_page(
        f"SELECT * FROM ({_SETTLEMENT_VIEW}) AS settlements",
        where=where,
        values=values,
        filters=filters,
        model=SettlementView,
    )


# Settlements and the old extension's processed transactions, in the old
# `/transactions` shape. The legacy table is never written any more.
_TRANSACTION_VIEW = f"""
    SELECT id, lamassu_transaction_id, fiat_amount, crypto_amount,
        commission_percentage, discount, effective_commission,
        commission_amount_sats, base_amount_sats, exchange_rate, crypto_code,
        fiat_code, device_id, transaction_time, processed_at, clients_count,
        distributions_total_sats, 'legacy' AS source, 'completed' AS status
    FROM {S}.lamassu_transactions
    UNION ALL
    SELECT s.id, COALESCE(s.lamassu_transaction_id, s.atm_txid, s.payment_hash),
        s.fiat_amount, s.amount_sats, s.commission_percentage, s.discount,
        s.commission_percentage * (1 - COALESCE(s.discount, 0) / 100),
        s.commission_sats, s.principal_sats, s.exchange_rate, 'LN', s.fiat_code,
        s.device_id, COALESCE(s.cash_out_time, s.paid_at), s.updated_at,
        (SELECT COUNT(*) FROM {S}.dca_payments p
            WHERE p.settlement_id = s.id AND p.status = 'confirmed'),
        COALESCE(s.distributed_sats, 0), 'settlement', s.status
    FROM {S}.settlements s
"""


async def get_transaction_views(
    filters: Filters | None = None,
) -> Page[TransactionView]:
    return await db.fetch_page(
        f"SELECT * FROM ({_TRANSACTION_VIEW}) AS transactions",
        filters=filters,
        model=TransactionView,
    )


async def get_transaction_view(transaction_id: str) -> TransactionView | None:
    return await db.fetchone(
        f"SELECT * FROM ({_TRANSACTION_VIEW}) AS transactions WHERE id = :id",
        {"id": transaction_id},
        TransactionView,
    )


async def get_transaction_distributions(
    transaction: TransactionView,
) -> list[DistributionView]:
    """A settlement's payouts, or the old extension's payments recorded against
    a legacy Lamassu transaction id."""
    if transaction.source == "settlement":
        where, values = "p.settlement_id = :id", {"id": transaction.id}
    else:
        where = "p.lamassu_transaction_id = :lid AND p.settlement_id IS NULL"
        values = {"lid": transaction.lamassu_transaction_id}
    return await db.fetchall(
        "SELECT p.id AS payment_id, p.client_id, c.username AS client_username, "
        "c.user_id AS client_user_id, p.amount_sats, p.amount_fiat, "
        f"p.exchange_rate, p.status, p.created_at FROM {S}.dca_payments p "
        f"LEFT JOIN {S}.dca_clients c ON c.id = p.client_id WHERE {where} "
        "ORDER BY p.created_at, p.id",
        values,
        DistributionView,
    )


async def get_settlements_by_status(
    statuses: Sequence[str], limit: int = 500, after_id: str = ""
) -> list[Settlement]:
    """A page of settlements in `statuses`, by id after `after_id` (keyset:
    rows that change status meanwhile never make a later page skip others)."""
    values: dict[str, Any] = {f"s{i}": s for i, s in enumerate(statuses)}
    values["limit"] = limit
    values["after"] = after_id
    placeholders = ", ".join(f":s{i}" for i in range(len(statuses)))
    return await db.fetchall(
        f"SELECT * FROM {S}.settlements WHERE status IN ({placeholders}) "
        "AND id > :after ORDER BY id LIMIT :limit",
        values,
        Settlement,
    )


async def get_recent_settlement_prices(
    currency: str, since: datetime, exclude_id: str, limit: int
) -> list[Decimal]:
    """Fiat per BTC of the most recent settlements in `currency` that were
    distributed (so their price was checked or accepted), newest first."""
    rows = await db.fetchall(
        f"SELECT fiat_amount, principal_sats FROM {S}.settlements "
        "WHERE fiat_code = :currency AND id <> :exclude AND principal_sats > 0 "
        f"AND status IN ({SPLIT_IN}) "
        f"AND paid_at >= {ts('since')} ORDER BY paid_at DESC LIMIT :limit",
        exact_times(
            {
                "currency": currency,
                "exclude": exclude_id,
                "since": since,
                "limit": limit,
            }
        ),
    )
    return [
        to_fiat(row["fiat_amount"]) * 10**8 / int(row["principal_sats"]) for row in rows
    ]


async def update_settlement(
    settlement: Settlement, expected_status: str | None = None
) -> bool:
    """Write the whole row; with `expected_status`, only if the stored status is
    still that (compare-and-set)."""
    settlement.updated_at = utc_now()
    if expected_status is None:
        await db.update(f"{S}.settlements", settlement)
        return True
    data = model_to_dict(settlement)
    sets = ", ".join(f'"{k}" = :{k}' for k in data if k != "id")
    data["expected_status"] = expected_status
    async with db.connect() as conn:
        result = await conn.conn.execute(
            text(
                f"UPDATE {S}.settlements SET {sets} "
                "WHERE id = :id AND status = :expected_status"
            ),
            data,
        )
        await conn.conn.commit()
    return result.rowcount == 1


async def count_settlements_by_status() -> dict[str, int]:
    rows = await db.fetchall(
        f"SELECT status, COUNT(*) AS n FROM {S}.settlements GROUP BY status"
    )
    return {row["status"]: int(row["n"]) for row in rows}


# ----------------------------------------------------------------- reconciliations


async def get_reconciliation(reconciliation_id: str) -> Reconciliation | None:
    return await db.fetchone(
        f"SELECT * FROM {S}.reconciliations WHERE id = :id",
        {"id": reconciliation_id},
        Reconciliation,
    )


async def get_reconciliation_by_settlement(settlement_id: str) -> Reconciliation | None:
    """The settlement's open orphan if it has one, else its first."""
    return await db.fetchone(
        f"SELECT * FROM {S}.reconciliations WHERE settlement_id = :sid "
        "ORDER BY CASE WHEN status = 'open' THEN 0 ELSE 1 END, created_at, id "
        "LIMIT 1",
        {"sid": settlement_id},
        Reconciliation,
    )


async def get_reconciliation_by_payout(
    payout: DcaPayment,
) -> Reconciliation | None:
    """The orphan an attribution payout belongs to. Attributions recorded
    before m008 kept no payout id: then the settlement's resolving attribution
    to the same client."""
    return await db.fetchone(
        f"SELECT * FROM {S}.reconciliations WHERE payout_id = :pid "
        "OR (payout_id IS NULL AND settlement_id = :sid AND status = 'resolving' "
        "AND resolution = 'attribute_to_client' AND target_client_id = :cid) "
        "ORDER BY CASE WHEN payout_id = :pid THEN 0 ELSE 1 END, created_at, id "
        "LIMIT 1",
        {"pid": payout.id, "sid": payout.settlement_id, "cid": payout.client_id},
        Reconciliation,
    )


_RECONCILIATION_VIEW = f"""
    SELECT r.*, s.device_id AS device_id, m.name AS machine_name
    FROM {S}.reconciliations r
    LEFT JOIN {S}.settlements s ON s.id = r.settlement_id
    LEFT JOIN {S}.machines m ON m.device_id = s.device_id
"""


async def get_reconciliations(
    filters: Filters | None = None, status: str | None = None
) -> Page[ReconciliationView]:
    where, values = [], {}
    if status:
        where.append("status = :status")
        values["status"] = status
    return await db.fetch_page(
        f"SELECT * FROM ({_RECONCILIATION_VIEW}) AS reconciliations",
        where=where,
        values=values,
        filters=filters,
        model=ReconciliationView,
    )


async def get_reconciliations_by_status(status: str) -> list[Reconciliation]:
    return await db.fetchall(
        f"SELECT * FROM {S}.reconciliations WHERE status = :status ORDER BY created_at",
        {"status": status},
        Reconciliation,
    )


async def update_reconciliation(
    reconciliation: Reconciliation, expected_status: str | None = None
) -> bool:
    reconciliation.updated_at = utc_now()
    if expected_status is None:
        await db.update(f"{S}.reconciliations", reconciliation)
        return True
    data = model_to_dict(reconciliation)
    sets = ", ".join(f'"{k}" = :{k}' for k in data if k != "id")
    data["expected_status"] = expected_status
    async with db.connect() as conn:
        result = await conn.conn.execute(
            text(
                f"UPDATE {S}.reconciliations SET {sets} "
                "WHERE id = :id AND status = :expected_status"
            ),
            data,
        )
        await conn.conn.commit()
    return result.rowcount == 1


async def compare_and_set(
    table: str,
    row_id: str,
    expect: dict[str, Any],
    changes: dict[str, Any],
    tx: Tx | None = None,
) -> bool:
    """Write `changes` to one row only if every `expect` column still holds its
    value (None: IS NULL). True if the row was written: the caller's view of
    the row was current, so its transition is the one that happened."""
    values: dict[str, Any] = {"row_id": row_id}
    sets, where = [], ["id = :row_id"]
    changes = {**_with_messages(table, changes), "updated_at": utc_now()}
    for i, (column, value) in enumerate(changes.items()):
        values[f"c{i}"] = value
        sets.append(
            f"{column} = {ts(f'c{i}') if isinstance(value, datetime) else f':c{i}'}"
        )
    for i, (column, value) in enumerate(expect.items()):
        if value is None:
            where.append(f"{column} IS NULL")
        else:
            values[f"e{i}"] = value
            where.append(f"{column} = :e{i}")
    query = f"UPDATE {S}.{table} SET {', '.join(sets)} WHERE {' AND '.join(where)}"
    # Exact (no HTML stripping): an `expect` read from the row must match it,
    # and a saved password or name is stored as typed.
    if tx is not None:
        result = await tx.execute_exact(query, values)
        return result.rowcount == 1
    return await _execute_exact_rowcount(query, values) == 1


# Texts the code writes, each with its message beside it (m017): written
# together, so a message never outlives the English it stands for.
MESSAGE_COLUMNS = {
    ("settlements", "status_detail"),
    ("dca_payments", "error"),
    ("commission_payouts", "error"),
    ("reconciliations", "error"),
}


def _with_messages(table: str, changes: dict[str, Any]) -> dict[str, Any]:
    """`changes` with each text column of MESSAGE_COLUMNS split into its
    English and its message (None for a plain string or None)."""
    result = dict(changes)
    for column, value in changes.items():
        if (table, column) in MESSAGE_COLUMNS and f"{column}_msg" not in changes:
            result[column], result[f"{column}_msg"] = stored_text(value)
        elif isinstance(value, Message):
            raise TypeError(f"{table}.{column} keeps no message")
    return result


async def get_reconciliation_ids_by_status(status: str) -> list[str]:
    rows = await db.fetchall(
        f"SELECT id FROM {S}.reconciliations WHERE status = :status "
        "ORDER BY created_at, id",
        {"status": status},
    )
    return [row["id"] for row in rows]


# ---------------------------------------------------------------------- summaries


async def get_totals() -> dict[str, Any]:
    """Headline figures for the overview, in a handful of aggregate queries."""
    deposits = await db.fetchone(
        f"SELECT COALESCE(SUM(CASE WHEN status = 'confirmed' THEN amount END), 0) "
        "AS confirmed, "
        "COALESCE(SUM(CASE WHEN status = 'pending' THEN amount END), 0) AS pending "
        f"FROM {S}.dca_deposits"
    )
    payouts = await db.fetchone(
        f"SELECT COALESCE(SUM(amount_fiat), 0) AS fiat, "
        "COALESCE(SUM(amount_sats), 0) AS sats, COUNT(*) AS n "
        f"FROM {S}.dca_payments WHERE status = 'confirmed'"
    )
    failed = await db.fetchone(
        f"SELECT COUNT(*) AS n FROM {S}.dca_payments WHERE status = 'failed' "
        "AND settlement_id IS NOT NULL"
    )
    # Left pending or failed by older software: they reserve nothing and are
    # never paid; shown so the operator can void them.
    legacy = await db.fetchone(
        f"SELECT COUNT(*) AS n FROM {S}.dca_payments "
        "WHERE status IN ('pending', 'failed') AND settlement_id IS NULL"
    )
    settlements = await db.fetchone(
        f"SELECT COALESCE(SUM(amount_sats), 0) AS sats, "
        "COALESCE(SUM(commission_sats), 0) AS commission, COUNT(*) AS n "
        f"FROM {S}.settlements WHERE status IN ({SPLIT_IN})"
    )
    orphans = await db.fetchone(
        f"SELECT COALESCE(SUM(orphan_sats), 0) AS sats, "
        "COALESCE(SUM(orphan_fiat), 0) AS fiat, COUNT(*) AS n "
        f"FROM {S}.reconciliations WHERE status <> 'resolved'"
    )
    return {
        "deposits_confirmed": to_fiat(deposits["confirmed"]),
        "deposits_pending": to_fiat(deposits["pending"]),
        "distributed_fiat": to_fiat(payouts["fiat"]),
        "distributed_sats": int(payouts["sats"]),
        "payouts_confirmed": int(payouts["n"]),
        "payouts_failed": int(failed["n"]),
        "legacy_unfinished_payouts": int(legacy["n"]),
        "settled_sats": int(settlements["sats"]),
        "commission_sats": int(settlements["commission"]),
        "settlements_processed": int(settlements["n"]),
        "open_orphan_sats": int(orphans["sats"]),
        "open_orphan_fiat": to_fiat(orphans["fiat"]),
        "open_orphans": int(orphans["n"]),
    }


# -------------------------------------------------------------------------- audit


async def add_audit(
    entity: str, entity_id: str, action: str, actor: str | None, details: dict
) -> None:
    entry = AuditEntry(
        id=urlsafe_short_hash(),
        entity=entity,
        entity_id=entity_id,
        action=action,
        actor=actor,
        details=json.dumps(details, default=str),
        created_at=utc_now(),
    )
    await db.insert(f"{S}.audit_log", entry)


async def get_audit(entity: str, entity_id: str) -> list[AuditEntry]:
    """An entity's history, its details also in words in the language of the
    request (`details_text`)."""
    entries = await db.fetchall(
        f"SELECT * FROM {S}.audit_log WHERE entity = :entity AND entity_id = :eid "
        "ORDER BY created_at, id",
        {"entity": entity, "eid": entity_id},
        AuditEntry,
    )
    for entry in entries:
        entry.details_text = audit_details_text(entry.details)
    return entries


# ------------------------------------------------------------------------- alerts


async def get_alert_settings() -> AlertSettings:
    row = await db.fetchone(
        f"SELECT data FROM {S}.alert_settings WHERE id = 'settings'"
    )
    if not row:
        return AlertSettings()
    try:
        return AlertSettings.parse_raw(row["data"])
    except ValueError:
        return AlertSettings()


async def set_alert_settings(settings: AlertSettings) -> AlertSettings:
    now = utc_now()
    values = exact_times({"data": settings.json(), "now": now})
    updated = await db.execute(
        f"UPDATE {S}.alert_settings SET data = :data, updated_at = {ts('now')} "
        "WHERE id = 'settings'",
        values,
    )
    if updated.rowcount != 1:
        await db.execute(
            f"INSERT INTO {S}.alert_settings (id, data, updated_at) "
            f"VALUES ('settings', :data, {ts('now')}) ON CONFLICT (id) DO UPDATE "
            "SET data = :data",
            values,
        )
    return settings


async def insert_alert_if_absent(alert: Alert) -> bool:
    """Insert unless an alert for (kind, subject) is open already: the partial
    unique index decides, across processes (ON CONFLICT DO NOTHING without a
    target). True if it is new."""
    query = insert_query(f"{S}.alerts", alert) + " ON CONFLICT DO NOTHING"
    async with transaction() as tx:
        result = await tx.conn.conn.execute(text(query), model_to_dict(alert))
        return result.rowcount == 1


async def get_open_alerts(kinds: Sequence[str] | None = None) -> list[Alert]:
    values: dict[str, Any] = {}
    where = "cleared_at IS NULL"
    if kinds:
        values = {f"k{i}": kind for i, kind in enumerate(kinds)}
        where += f" AND kind IN ({', '.join(':' + k for k in values)})"
    return await db.fetchall(
        f"SELECT * FROM {S}.alerts WHERE {where} ORDER BY opened_at, id",
        values,
        Alert,
    )


async def clear_alert(alert_id: str, now: datetime) -> bool:
    return (
        await _execute_rowcount(
            f"UPDATE {S}.alerts SET cleared_at = {ts('now')} "
            "WHERE id = :id AND cleared_at IS NULL",
            {"id": alert_id, "now": now},
        )
        == 1
    )


async def claim_alert_send(alert_id: str, column: str, now: datetime) -> bool:
    """Mark an alert (or its clearing) sent, once: True for the one caller
    that may send it."""
    assert column in ("sent_at", "cleared_sent_at")
    return (
        await _execute_rowcount(
            f"UPDATE {S}.alerts SET {column} = {ts('now')} "
            f"WHERE id = :id AND {column} IS NULL",
            {"id": alert_id, "now": now},
        )
        == 1
    )


async def get_unsent_alerts(limit: int = 500) -> list[Alert]:
    return await db.fetchall(
        f"SELECT * FROM {S}.alerts WHERE sent_at IS NULL AND cleared_at IS NULL "
        "ORDER BY opened_at, id LIMIT :limit",
        {"limit": limit},
        Alert,
    )


async def get_alert(alert_id: str) -> Alert | None:
    return await db.fetchone(
        f"SELECT * FROM {S}.alerts WHERE id = :id", {"id": alert_id}, Alert
    )


async def acknowledge_alert(
    alert_id: str, actor: str | None, now: datetime, clear: bool
) -> bool:
    sets = f"acknowledged_at = {ts('now')}, acknowledged_by = :actor"
    if clear:
        sets += f", cleared_at = COALESCE(cleared_at, {ts('now')})"
    return (
        await _execute_rowcount(
            f"UPDATE {S}.alerts SET {sets} WHERE id = :id AND acknowledged_at IS NULL",
            {"id": alert_id, "actor": actor, "now": now},
        )
        == 1
    )


async def get_alerts(filters: Filters, open_only: bool = False) -> Page[Alert]:
    return await db.fetch_page(
        f"SELECT * FROM {S}.alerts",
        ["cleared_at IS NULL"] if open_only else [],
        {},
        filters=filters,
        model=Alert,
    )
