"""Client statements (statements.py): what a client deposited, bought and
holds over a period, as CSV or PDF, in English or Spanish; for one client, or
for every client as a zip. Read only.

The queries are here; the arithmetic is in statements.py and the layout in
statements_render.py. Whatever the number of clients, a statement reads four
aggregate or period-bounded queries: sums from before the period, and the
rows inside it."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel

from .auth import ReadAccess
from .crud import S, db, exact_times, get_client, get_clients, ts
from .messages import text
from .models import API_ERROR_RESPONSES, DcaClient, ErrorResponse, utc_now
from .statements import (
    FORMATS,
    LANGUAGES,
    Carried,
    ClientStatement,
    Deposit,
    Period,
    Purchase,
    StatementInputError,
    build_statement,
    cents,
    check_choice,
    parse_period,
)
from .statements_render import (
    PdfUnavailableError,
    file_name,
    render,
    render_zip,
    require_fpdf,
)

satmachineadmin_statements_router = APIRouter(
    prefix="/api/v1/dca",
    responses={
        **API_ERROR_RESPONSES,
        424: {
            "model": ErrorResponse,
            "description": "A PDF was asked for and the optional package fpdf2 "
            "is not installed; the message names the command that adds it",
        },
    },
)

_MEDIA = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


# ------------------------------------------------------------------- queries


class _DepositRow(BaseModel):
    id: str
    client_id: str
    amount: Any
    currency: str | None = None
    at: datetime


class _PurchaseRow(BaseModel):
    id: str
    client_id: str
    amount_sats: int
    amount_fiat: Any
    currency: str | None = None
    machine: str | None = None
    at: datetime


# When each row counts: the client extension's dates.
_DEPOSIT_AT = "COALESCE(confirmed_at, created_at)"
_PURCHASE_AT = "COALESCE(p.transaction_time, p.created_at)"


def _where_client(client_id: str | None, column: str = "client_id") -> str:
    return f" AND {column} = :client_id" if client_id else ""


async def _carried(period: Period, client_id: str | None) -> dict[str, list[Carried]]:
    """Per client and currency: confirmed deposits and payouts before the
    period, summed by the database."""
    values = exact_times({"start": period.starts_at, "client_id": client_id})
    deposits = await db.fetchall(
        f"SELECT client_id, currency, SUM(amount) AS total FROM {S}.dca_deposits "
        f"WHERE status = 'confirmed' AND {_DEPOSIT_AT} < {ts('start')}"
        f"{_where_client(client_id)} GROUP BY client_id, currency",
        values,
    )
    payouts = await db.fetchall(
        f"SELECT p.client_id, p.currency, SUM(p.amount_fiat) AS fiat, "
        f"SUM(p.amount_sats) AS sats FROM {S}.dca_payments p "
        f"WHERE p.status = 'confirmed' AND {_PURCHASE_AT} < {ts('start')}"
        f"{_where_client(client_id, 'p.client_id')} GROUP BY p.client_id, p.currency",
        values,
    )
    sums: dict[tuple[str, str], Carried] = {}
    for row in deposits:
        key = (row["client_id"], row["currency"] or "GTQ")
        sums[key] = Carried(key[1], deposits=cents(row["total"] or 0))
    for row in payouts:
        key = (row["client_id"], row["currency"] or "GTQ")
        before = sums.get(key, Carried(key[1]))
        sums[key] = Carried(
            key[1],
            deposits=before.deposits,
            fiat=cents(row["fiat"] or 0),
            sats=int(row["sats"] or 0),
        )
    result: dict[str, list[Carried]] = defaultdict(list)
    for (cid, _), carry in sorted(sums.items()):
        result[cid].append(carry)
    return result


async def _in_period(
    period: Period, client_id: str | None
) -> tuple[dict[str, list[Deposit]], dict[str, list[Purchase]]]:
    values = exact_times(
        {"start": period.starts_at, "end": period.ends_at, "client_id": client_id}
    )
    deposit_rows = await db.fetchall(
        f"SELECT id, client_id, amount, currency, {_DEPOSIT_AT} AS at "
        f"FROM {S}.dca_deposits WHERE status = 'confirmed' "
        f"AND {_DEPOSIT_AT} >= {ts('start')} AND {_DEPOSIT_AT} < {ts('end')}"
        f"{_where_client(client_id)}",
        values,
        _DepositRow,
    )
    # The machine: the device of the settlement the payout came from.
    purchase_rows = await db.fetchall(
        f"SELECT p.id, p.client_id, p.amount_sats, p.amount_fiat, p.currency, "
        f"s.device_id AS machine, {_PURCHASE_AT} AS at FROM {S}.dca_payments p "
        f"LEFT JOIN {S}.settlements s ON s.id = p.settlement_id "
        f"WHERE p.status = 'confirmed' AND {_PURCHASE_AT} >= {ts('start')} "
        f"AND {_PURCHASE_AT} < {ts('end')}{_where_client(client_id, 'p.client_id')}",
        values,
        _PurchaseRow,
    )
    deposits: dict[str, list[Deposit]] = defaultdict(list)
    for d in deposit_rows:
        deposits[d.client_id].append(
            Deposit(d.at, cents(d.amount), d.currency or "GTQ", d.id)
        )
    purchases: dict[str, list[Purchase]] = defaultdict(list)
    for p in purchase_rows:
        purchases[p.client_id].append(
            Purchase(
                p.at,
                int(p.amount_sats),
                cents(p.amount_fiat),
                p.currency or "GTQ",
                p.machine,
                p.id,
            )
        )
    return deposits, purchases


async def build_statements(
    clients: list[DcaClient], period: Period
) -> list[ClientStatement]:
    only = clients[0].id if len(clients) == 1 else None
    carried = await _carried(period, only)
    deposits, purchases = await _in_period(period, only)
    now = utc_now()
    return [
        build_statement(
            client.id,
            client.username,
            period,
            deposits.get(client.id, []),
            purchases.get(client.id, []),
            carried.get(client.id, []),
            generated_at=now,
        )
        for client in clients
    ]


# -------------------------------------------------------------------- routes


def _choices(
    period: str | None, start: str | None, end: str | None, fmt: str, lang: str
) -> tuple[Period, str, str]:
    """Validate everything before anything is read (400 with the reason), and
    answer 424 for a PDF this LNbits cannot make."""
    try:
        chosen_format = check_choice(fmt, FORMATS, "format")
        chosen_lang = check_choice(lang, LANGUAGES, "lang")
        chosen_period = parse_period(period, start, end, utc_now().date())
    except StatementInputError as exc:
        raise HTTPException(HTTPStatus.BAD_REQUEST, str(exc)) from exc
    if chosen_format == "pdf":
        try:
            require_fpdf()
        except PdfUnavailableError as exc:
            raise HTTPException(HTTPStatus.FAILED_DEPENDENCY, str(exc)) from exc
    return chosen_period, chosen_format, chosen_lang


def _file(content: bytes, name: str, media_type: str) -> Response:
    return Response(
        content,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


_FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/pdf": {"schema": {"type": "string", "format": "binary"}},
        }
    }
}

_PERIOD_DOC = "A month (YYYY-MM) or a year (YYYY), instead of from/to."
_FROM_DOC = "First day (YYYY-MM-DD, UTC), included."
_TO_DOC = "Last day (YYYY-MM-DD, UTC), included; default today."


@satmachineadmin_statements_router.get(
    "/statements/{client_id}",
    response_class=Response,
    responses=_FILE_RESPONSES,
)
async def api_client_statement(
    client_id: str,
    _: ReadAccess,
    start: str | None = Query(None, alias="from", description=_FROM_DOC),
    end: str | None = Query(None, alias="to", description=_TO_DOC),
    period: str | None = Query(None, description=_PERIOD_DOC),
    fmt: str = Query("csv", alias="format", description="csv or pdf"),
    lang: str = Query("en", description="en or es"),
) -> Response:
    """One client's statement for a period: deposits, every DCA purchase
    (date, sats, fiat, price per BTC, machine), totals, average cost per BTC,
    and the balance at the start and at the end (confirmed deposits minus
    confirmed payouts: the client extension's balance), per currency."""
    chosen_period, chosen_format, chosen_lang = _choices(period, start, end, fmt, lang)
    client = await get_client(client_id)
    if not client:
        raise HTTPException(HTTPStatus.NOT_FOUND, text("not_found.client"))
    [statement] = await build_statements([client], chosen_period)
    # fpdf2 is synchronous: lay the PDF out off the event loop.
    content = await asyncio.to_thread(render, statement, chosen_format, chosen_lang)
    return _file(
        content,
        file_name(statement, chosen_format, with_id=False),
        _MEDIA[chosen_format],
    )


@satmachineadmin_statements_router.get(
    "/statements",
    response_class=Response,
    responses={200: {"content": {"application/zip": {"schema": {"type": "string"}}}}},
)
async def api_all_statements(
    _: ReadAccess,
    start: str | None = Query(None, alias="from", description=_FROM_DOC),
    end: str | None = Query(None, alias="to", description=_TO_DOC),
    period: str | None = Query(None, description=_PERIOD_DOC),
    fmt: str = Query("csv", alias="format", description="csv or pdf"),
    lang: str = Query("en", description="en or es"),
) -> Response:
    """Every client's statement for the period, one file per client, in a zip."""
    chosen_period, chosen_format, chosen_lang = _choices(period, start, end, fmt, lang)
    clients = await get_clients()
    statements = await build_statements(clients, chosen_period)
    content = await asyncio.to_thread(
        render_zip, statements, chosen_format, chosen_lang
    )
    return _file(
        content,
        f"statements_{chosen_period.label}_{chosen_format}.zip",
        "application/zip",
    )
