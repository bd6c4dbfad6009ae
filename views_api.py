"""The operator REST API under /satmachineadmin/api/v1/dca/...

Every endpoint but `client-limits` requires operator access (see auth.py):
reads accept a super user/admin token, admin key or invoice key; writes need a
token or an admin key. Bad input answers 4xx and changes nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from lnbits.core.crud import get_wallet
from lnbits.db import FilterModel, Filters, Page
from lnbits.helpers import generate_filter_params_openapi, urlsafe_short_hash
from pydantic import BaseModel, ValidationError

from .allocation import AllocationError
from .auth import ReadAccess, WriteAccess
from .crud import (
    StableFilters,
    add_audit,
    create_client,
    create_config,
    create_deposit,
    delete_config,
    get_audit,
    get_client,
    get_client_balance_summary,
    get_client_by_wallet,
    get_client_summaries,
    get_client_summary,
    get_config,
    get_config_by_id,
    get_delivery_slots,
    get_deposit,
    get_deposits,
    get_distributed_per_day,
    get_flow_balances,
    get_payments,
    get_reconciliation,
    get_reconciliation_by_settlement,
    get_reconciliations,
    get_scheduled_payouts,
    get_scheduled_totals,
    get_settlement,
    get_settlement_payouts,
    get_settlements,
    get_totals,
    get_transaction_distributions,
    get_transaction_view,
    get_transaction_views,
    update_client_fields,
    update_config_fields,
    update_deposit_if_status,
)
from .fixed_mode import Schedule, fixed_day, schedule_error, server_time_zone
from .machines import (
    dry_run_parts,
    get_commission_payouts,
    get_machine_by_device,
    get_machine_figures,
    get_machines,
    receiving_wallet_id,
    recipient_wallet_ids,
    recipients_for,
    refuse_shares_of_source,
    source_wallet_ids,
)
from .messages import MessageError, text
from .models import (
    API_ERROR_RESPONSES,
    DEFAULT_CLIENT_LIMIT,
    AuditEntry,
    ClientBalanceSummary,
    ClientLimits,
    ClientStatusData,
    ClientSummary,
    CommissionPart,
    CreateDcaClientData,
    CreateDepositData,
    CreateLamassuConfigData,
    DcaClient,
    DcaDeposit,
    DcaPayment,
    DeliverySlot,
    DepositStatus,
    DepositView,
    DismissSettlementData,
    DistributionView,
    LamassuConfig,
    ManualCashOutData,
    PayoutPage,
    PayoutView,
    PublicLamassuConfig,
    Reconciliation,
    ReconciliationPage,
    ResolveReconciliationData,
    Settlement,
    SettlementDetail,
    SettlementPage,
    SuccessResponse,
    Summary,
    TestTransactionData,
    TransactionView,
    UpdateDcaClientData,
    UpdateDepositData,
    UpdateDepositStatusData,
    UpdateLamassuConfigData,
    document_nullable,
    utc_now,
)
from .orphan_resolution import resolve_reconciliation
from .transaction_processor import (
    ProcessingError,
    accept_settlement,
    cancel_payout,
    dismiss_settlement,
    dry_run,
    enter_cash_out,
    retry_settlement,
)

satmachineadmin_api_router = APIRouter(
    prefix="/api/v1/dca",
    responses=API_ERROR_RESPONSES,
)

SECRET_FIELDS = ("password", "ssh_password", "ssh_private_key")
SCHEDULE_FIELDS = ("fixed_delivery", "fixed_delivery_time", "fixed_delivery_times")
CONFIG_FIELDS = LamassuConfig.__fields__


# ------------------------------------------------------------------- filters


def search_fields(*columns: str) -> list[str]:
    """LNbits' search joins its fields' texts end to end and looks for the
    words in that: "ana" + "5f2c..." would answer a search for "ana5". A line
    break between the fields (an SQL literal that LNbits joins like a field)
    keeps a search inside one field; nobody types a line break in a search."""
    separated: list[str] = []
    for column in columns:
        if separated:
            separated.append("'\n'")
        separated.append(column)
    return separated


class ClientFilters(FilterModel):
    __search_fields__ = search_fields("username", "wallet_id", "user_id", "id")
    __sort_fields__ = [
        "username",
        "created_at",
        "status",
        "dca_mode",
        "confirmed_deposits",
        "distributed_fiat",
        "distributed_sats",
        "remaining_balance",
    ]
    status: str | None
    dca_mode: str | None


class DepositFilters(FilterModel):
    __search_fields__ = search_fields("notes", "client_id", "id", "username")
    __sort_fields__ = ["created_at", "confirmed_at", "amount", "status"]
    status: str | None
    client_id: str | None
    currency: str | None


class PayoutFilters(FilterModel):
    __search_fields__ = search_fields("username", "client_id", "settlement_id", "id")
    __sort_fields__ = ["created_at", "amount_sats", "amount_fiat", "status"]
    status: str | None
    client_id: str | None
    settlement_id: str | None
    transaction_type: str | None
    device_id: str | None  # the machine (#14)


class SettlementFilters(FilterModel):
    __search_fields__ = search_fields(
        "payment_hash", "id", "memo", "lamassu_transaction_id"
    )
    __sort_fields__ = ["paid_at", "created_at", "amount_sats", "status"]
    status: str | None
    fiat_code: str | None
    device_id: str | None  # the machine (#14)
    wallet_id: str | None  # the source wallet it arrived in


class ReconciliationFilters(FilterModel):
    __search_fields__ = search_fields("settlement_id", "id", "note")
    __sort_fields__ = ["created_at", "orphan_sats", "status"]
    status: str | None
    settlement_id: str | None
    device_id: str | None  # the machine (#14)


def filters_for(model: type[FilterModel], default_sort: str) -> Callable:
    """LNbits' parse_filters, with bad sort fields answered by 400 (not 500)
    and a newest-first default."""

    def dependency(
        request: Request,
        limit: int | None = Query(None, ge=0, le=1000),
        offset: int | None = Query(None, ge=0, le=1_000_000_000),
        sortby: str | None = None,
        direction: Literal["asc", "desc"] | None = None,
        search: str | None = Query(None, max_length=200),
    ) -> Filters:
        from lnbits.db import Filter

        parsed = []
        for i, key in enumerate(request.query_params.keys()):
            if key in {"limit", "offset", "sortby", "direction", "search"}:
                continue
            try:
                parsed.append(
                    Filter.parse_query(key, request.query_params.getlist(key), model, i)
                )
            except (ValueError, ValidationError):
                continue
        try:
            return StableFilters(
                filters=parsed,
                limit=limit if limit is not None else 100,
                offset=offset,
                sortby=sortby or default_sort,
                direction=direction or ("desc" if not sortby else "asc"),
                search=search,
                model=model,
            )
        except (ValueError, ValidationError) as exc:
            raise HTTPException(
                HTTPStatus.BAD_REQUEST, text("request.invalid_sort")
            ) from exc

    return dependency


def _not_found(what: str) -> HTTPException:
    """404 in the reader's language; `what` names a `not_found.*` message."""
    return HTTPException(HTTPStatus.NOT_FOUND, text(f"not_found.{what}"))


def _conflict(detail: str) -> HTTPException:
    """409; `detail` is a text already in the reader's language (`text(...)`,
    or the str() of a ProcessingError)."""
    return HTTPException(HTTPStatus.CONFLICT, detail)


def _bad_request(detail: str) -> HTTPException:
    """400; `detail` as for `_conflict`."""
    return HTTPException(HTTPStatus.BAD_REQUEST, detail)


async def _refuse_source_wallet(wallet_id: str) -> None:
    """A client's wallet is never one ATM settlements arrive in (the configured
    source wallet or a machine's): payouts to it would only move the
    operator's sats between the operator's wallets, and the client would never
    be paid."""
    wallet = await get_wallet(wallet_id)
    # LNbits' share of a wallet receives into that wallet itself.
    ids = {wallet_id, receiving_wallet_id(wallet) if wallet else wallet_id}
    if ids & await source_wallet_ids(await get_config()):
        raise _bad_request(text("client.wallet_is_source"))


# ---------------------------------------------------------- public endpoint


@satmachineadmin_api_router.get("/client-limits", response_model=ClientLimits)
async def api_client_limits() -> ClientLimits:
    """The only unauthenticated endpoint: the companion client extension reads
    the most a client may set as fixed-mode daily limit."""
    config = await get_config()
    limit = (config.max_daily_limit if config else None) or DEFAULT_CLIENT_LIMIT
    currency = (config.limit_currency if config else None) or "GTQ"
    return ClientLimits(max_daily_limit_gtq=float(limit), currency=currency)


# ------------------------------------------------------------------- clients


@satmachineadmin_api_router.get(
    "/clients",
    response_model=list[ClientSummary],
    openapi_extra=generate_filter_params_openapi(ClientFilters),
)
async def api_get_clients(
    response: Response,
    _: ReadAccess,
    filters: Filters = Depends(filters_for(ClientFilters, "created_at")),
) -> list[ClientSummary]:
    page = await get_client_summaries(filters)
    response.headers["X-Total-Count"] = str(page.total)
    return page.data


@satmachineadmin_api_router.post(
    "/clients", status_code=HTTPStatus.CREATED, response_model=DcaClient
)
async def api_create_client(data: CreateDcaClientData, op: WriteAccess) -> DcaClient:
    wallet = await get_wallet(data.wallet_id)
    if not wallet or wallet.deleted:
        raise _not_found("wallet")
    if await get_client_by_wallet(wallet.id):
        raise _conflict(text("client.wallet_registered"))
    await _refuse_source_wallet(wallet.id)
    await _check_mode_and_limit(None, data.dict(exclude_none=True))
    now = utc_now()
    client = DcaClient(
        id=urlsafe_short_hash(),
        user_id=wallet.user,
        wallet_id=wallet.id,
        username=data.username or wallet.name,
        dca_mode=data.dca_mode.value,
        fixed_mode_daily_limit=data.fixed_mode_daily_limit,
        status="active",
        created_at=now,
        updated_at=now,
        reviewed_at=now,  # registered by the operator: reviewed
    )
    await create_client(client)
    await add_audit("client", client.id, "registered", op.user_id, data.dict())
    return client


@satmachineadmin_api_router.put(
    "/clients/{client_id}/reviewed", response_model=DcaClient
)
async def api_review_client(client_id: str, op: WriteAccess) -> DcaClient:
    """The operator has looked at a client row (e.g. one the client extension
    inserted): it is no longer shown as new."""
    client = await get_client(client_id)
    if not client:
        raise _not_found("client")
    # Only reviewed_at: the rest of the row may have changed since it was read.
    reviewed = await update_client_fields(client.id, {"reviewed_at": utc_now()})
    if not reviewed:
        raise _not_found("client")
    await add_audit("client", client.id, "reviewed", op.user_id, {})
    return reviewed


@satmachineadmin_api_router.get("/clients/{client_id}", response_model=ClientSummary)
async def api_get_client(client_id: str, _: ReadAccess) -> ClientSummary:
    summary = await get_client_summary(client_id)
    if not summary:
        raise _not_found("client")
    return summary


@satmachineadmin_api_router.get(
    "/clients/{client_id}/balance", response_model=ClientBalanceSummary
)
async def api_get_client_balance(client_id: str, _: ReadAccess) -> ClientBalanceSummary:
    summary = await get_client_balance_summary(client_id)
    if not summary:
        raise _not_found("client")
    return summary


@satmachineadmin_api_router.put("/clients/{client_id}", response_model=DcaClient)
async def api_update_client(
    client_id: str, data: UpdateDcaClientData, op: WriteAccess
) -> DcaClient:
    client = await get_client(client_id)
    if not client:
        raise _not_found("client")
    changes = {k: v for k, v in data.dict(exclude_unset=True).items() if v is not None}
    await _check_mode_and_limit(client, changes)
    if "wallet_id" in changes:
        wallet = await get_wallet(changes["wallet_id"])
        if not wallet or wallet.deleted or wallet.user != client.user_id:
            raise _bad_request(text("client.wallet_not_users"))
        # One client per wallet, as at registration: the client extension
        # finds a client by its wallet, and two would share one dashboard.
        holder = await get_client_by_wallet(wallet.id)
        if holder and holder.id != client.id:
            raise _conflict(text("client.wallet_registered"))
        await _refuse_source_wallet(wallet.id)
    # Only the columns this request changes: a status, a limit or a wallet
    # another request (or the client extension) wrote since the read stays.
    updated = await update_client_fields(
        client.id, {k: getattr(v, "value", v) for k, v in changes.items()}
    )
    if not updated:
        raise _not_found("client")
    await add_audit("client", client.id, "updated", op.user_id, changes)
    return updated


async def _check_mode_and_limit(client: DcaClient | None, changes: dict) -> None:
    """A fixed-mode client needs a daily limit, at most the operator's maximum
    (what GET /client-limits tells the client extension). Checked before
    anything is written: an invalid request changes nothing. A request that
    changes neither (a new name or wallet) is not held up by a row the client
    extension wrote without a limit."""
    mode = getattr(changes.get("dca_mode"), "value", changes.get("dca_mode"))
    mode = mode or (client.dca_mode if client else "flow")
    limit = changes.get("fixed_mode_daily_limit")
    if limit is None and client:
        limit = client.fixed_mode_daily_limit
    config = await get_config()
    maximum = config.max_limit if config else DEFAULT_CLIENT_LIMIT
    currency = config.limit_code if config else "GTQ"
    if "fixed_mode_daily_limit" in changes and limit is not None and limit > maximum:
        raise _bad_request(
            text("client.limit_above_maximum", maximum=maximum, currency=currency)
        )
    touched = "dca_mode" in changes or "fixed_mode_daily_limit" in changes
    if touched and mode == "fixed" and not limit:
        raise _bad_request(text("client.fixed_needs_limit"))


@satmachineadmin_api_router.put("/clients/{client_id}/status", response_model=DcaClient)
async def api_set_client_status(
    client_id: str, data: ClientStatusData, op: WriteAccess
) -> DcaClient:
    client = await get_client(client_id)
    if not client:
        raise _not_found("client")
    previous = client.status
    # Only the status, and only from the status read (the audit's "from").
    updated = await update_client_fields(
        client.id, {"status": data.status.value}, expect={"status": previous}
    )
    if not updated:
        raise _conflict(text("client.changed_meanwhile"))
    await add_audit(
        "client",
        client.id,
        "status",
        op.user_id,
        {"from": previous, "to": updated.status},
    )
    return updated


# ------------------------------------------------------------------ deposits


@satmachineadmin_api_router.get(
    "/deposits",
    response_model=list[DepositView],
    openapi_extra=generate_filter_params_openapi(DepositFilters),
)
async def api_get_deposits(
    response: Response,
    _: ReadAccess,
    filters: Filters = Depends(filters_for(DepositFilters, "created_at")),
) -> list[DepositView]:
    page = await get_deposits(filters)
    response.headers["X-Total-Count"] = str(page.total)
    return page.data


@satmachineadmin_api_router.get("/deposits/{deposit_id}", response_model=DcaDeposit)
async def api_get_deposit(deposit_id: str, _: ReadAccess) -> DcaDeposit:
    deposit = await get_deposit(deposit_id)
    if not deposit:
        raise _not_found("deposit")
    return deposit


@satmachineadmin_api_router.get(
    "/deposits/{deposit_id}/history", response_model=list[AuditEntry]
)
async def api_get_deposit_history(deposit_id: str, _: ReadAccess) -> list[AuditEntry]:
    if not await get_deposit(deposit_id):
        raise _not_found("deposit")
    return await get_audit("deposit", deposit_id)


@satmachineadmin_api_router.post(
    "/deposits", status_code=HTTPStatus.CREATED, response_model=DcaDeposit
)
async def api_create_deposit(data: CreateDepositData, op: WriteAccess) -> DcaDeposit:
    if not await get_client(data.client_id):
        raise _not_found("client")
    deposit = DcaDeposit(
        id=urlsafe_short_hash(),
        client_id=data.client_id,
        amount=data.amount,
        currency=data.currency,
        status=DepositStatus.pending.value,
        notes=data.notes,
        created_at=utc_now(),
    )
    await create_deposit(deposit)
    await add_audit("deposit", deposit.id, "created", op.user_id, data.dict())
    return deposit


@satmachineadmin_api_router.put("/deposits/{deposit_id}", response_model=DcaDeposit)
async def api_update_deposit(
    deposit_id: str, data: UpdateDepositData, op: WriteAccess
) -> DcaDeposit:
    deposit = await get_deposit(deposit_id)
    if not deposit:
        raise _not_found("deposit")
    read = deposit.copy()  # what this request decides on
    if deposit.status != DepositStatus.pending.value:
        raise _conflict(text("deposit.edit_only_pending", status=deposit.status))
    before = {
        "amount": deposit.amount,
        "currency": deposit.currency,
        "notes": deposit.notes,
    }
    changes = data.dict(exclude_unset=True)
    for key, value in changes.items():
        if value is not None or key == "notes":
            setattr(deposit, key, value)
    if not await update_deposit_if_status(
        deposit, DepositStatus.pending.value, read=read
    ):
        raise _conflict(text("deposit.changed_meanwhile"))
    await add_audit(
        "deposit",
        deposit.id,
        "edited",
        op.user_id,
        {"before": before, "changes": changes},
    )
    return deposit


@satmachineadmin_api_router.put(
    "/deposits/{deposit_id}/status", response_model=DcaDeposit
)
async def api_update_deposit_status(
    deposit_id: str, data: UpdateDepositStatusData, op: WriteAccess
) -> DcaDeposit:
    """Confirm (cash is in the machine) or cancel a pending deposit. A confirmed
    deposit is final: its fiat may already have been paid out."""
    deposit = await get_deposit(deposit_id)
    if not deposit:
        raise _not_found("deposit")
    read = deposit.copy()  # what this request decides on
    if data.status.value == deposit.status:
        raise _conflict(text("deposit.already_status", status=deposit.status))
    if deposit.status != DepositStatus.pending.value:
        raise _conflict(text("deposit.status_final", status=deposit.status))
    if data.status == DepositStatus.pending:
        raise _conflict(text("deposit.not_back_to_pending"))
    deposit.status = data.status.value
    if data.notes is not None:
        deposit.notes = data.notes
    if data.status == DepositStatus.confirmed:
        deposit.confirmed_at = utc_now()
    if not await update_deposit_if_status(
        deposit, DepositStatus.pending.value, read=read
    ):
        raise _conflict(text("deposit.changed_meanwhile"))
    await add_audit(
        "deposit", deposit.id, deposit.status, op.user_id, {"notes": data.notes}
    )
    return deposit


# ----------------------------------------------- payouts (old "transactions")


@satmachineadmin_api_router.get(
    "/payouts",
    response_model=PayoutPage,
    openapi_extra=generate_filter_params_openapi(PayoutFilters),
)
async def api_get_payouts(
    _: ReadAccess,
    filters: Filters = Depends(filters_for(PayoutFilters, "created_at")),
) -> Page:
    page = await get_payments(filters)
    page.data = [p.for_reader() for p in page.data]  # errors in their language
    return page


@satmachineadmin_api_router.post(
    "/payouts/{payout_id}/cancel", response_model=DcaPayment
)
async def api_cancel_payout(
    payout_id: str, data: DismissSettlementData, op: WriteAccess
) -> DcaPayment:
    """Give up on a payout that can never succeed (pending or failed). A row
    left by the old extension (no settlement) is voided; a settlement's payout
    is cancelled only if never paid, and its sats join the settlement's orphan.
    409 if it is confirmed, already cancelled, or was paid after all."""
    try:
        return (await cancel_payout(payout_id, data.reason, op.user_id)).for_reader()
    except LookupError as exc:
        raise _not_found("payout") from exc
    except ProcessingError as exc:
        raise _conflict(str(exc)) from exc


class TransactionFilters(FilterModel):
    __search_fields__ = search_fields("id", "lamassu_transaction_id", "device_id")
    __sort_fields__ = ["transaction_time", "processed_at", "crypto_amount", "status"]
    source: str | None
    status: str | None
    fiat_code: str | None


@satmachineadmin_api_router.get(
    "/transactions",
    response_model=list[TransactionView],
    openapi_extra=generate_filter_params_openapi(TransactionFilters),
)
async def api_get_transactions(
    response: Response,
    _: ReadAccess,
    filters: Filters = Depends(filters_for(TransactionFilters, "transaction_time")),
) -> list[TransactionView]:
    """Parity path, in the old shape: the old extension's processed Lamassu
    transactions and this extension's settlements, newest first. The total is
    in the X-Total-Count header."""
    page = await get_transaction_views(filters)
    response.headers["X-Total-Count"] = str(page.total)
    return page.data


@satmachineadmin_api_router.get(
    "/transactions/{transaction_id}", response_model=TransactionView
)
async def api_get_transaction(transaction_id: str, _: ReadAccess) -> TransactionView:
    transaction = await get_transaction_view(transaction_id)
    if not transaction:
        raise _not_found("transaction")
    return transaction


@satmachineadmin_api_router.get(
    "/transactions/{transaction_id}/distributions",
    response_model=list[DistributionView],
)
async def api_get_transaction_distributions(
    transaction_id: str, _: ReadAccess
) -> list[DistributionView]:
    transaction = await get_transaction_view(transaction_id)
    if not transaction:
        raise _not_found("transaction")
    return await get_transaction_distributions(transaction)


# --------------------------------------------------------------- settlements


@satmachineadmin_api_router.get(
    "/settlements",
    response_model=SettlementPage,
    openapi_extra=generate_filter_params_openapi(SettlementFilters),
)
async def api_get_settlements(
    _: ReadAccess,
    filters: Filters = Depends(filters_for(SettlementFilters, "paid_at")),
) -> Page:
    page = await get_settlements(filters)
    page.data = [s.for_reader() for s in page.data]  # details in their language
    return page


@satmachineadmin_api_router.get(
    "/settlements/{settlement_id}", response_model=SettlementDetail
)
async def api_get_settlement(settlement_id: str, _: ReadAccess) -> SettlementDetail:
    settlement = await get_settlement(settlement_id)
    if not settlement:
        raise _not_found("settlement")
    machine = (
        await get_machine_by_device(settlement.device_id)
        if settlement.device_id
        else None
    )
    rec = await get_reconciliation_by_settlement(settlement_id)
    # Texts the code wrote, in the reader's language (models.stored_text).
    return SettlementDetail(
        **settlement.for_reader().dict(),
        payouts=[p.for_reader() for p in await get_settlement_payouts(settlement_id)],
        reconciliation=rec.for_reader() if rec else None,
        commission_payouts=[
            p.for_reader() for p in await get_commission_payouts(settlement_id)
        ],
        machine_name=machine.name if machine else None,
    )


async def _settlement_action(coro) -> Settlement:
    try:
        return (await coro).for_reader()
    except LookupError as exc:
        raise _not_found("settlement") from exc
    except ProcessingError as exc:
        raise _conflict(str(exc)) from exc
    except AllocationError as exc:
        raise _bad_request(str(exc)) from exc


@satmachineadmin_api_router.put(
    "/settlements/{settlement_id}/cash-out", response_model=Settlement
)
async def api_enter_cash_out(
    settlement_id: str, data: ManualCashOutData, op: WriteAccess
) -> Settlement:
    """Enter the cash-out data of a settlement that waits or is flagged; it is
    then distributed at once."""
    return await _settlement_action(enter_cash_out(settlement_id, data, op.user_id))


@satmachineadmin_api_router.put(
    "/settlements/{settlement_id}/dismiss", response_model=Settlement
)
async def api_dismiss_settlement(
    settlement_id: str, data: DismissSettlementData, op: WriteAccess
) -> Settlement:
    """Not an ATM settlement (e.g. a top-up of the source wallet): record who
    and why, and never distribute it."""
    return await _settlement_action(
        dismiss_settlement(settlement_id, data.reason, op.user_id)
    )


@satmachineadmin_api_router.post(
    "/settlements/{settlement_id}/accept", response_model=Settlement
)
async def api_accept_settlement(
    settlement_id: str, data: DismissSettlementData, op: WriteAccess
) -> Settlement:
    """Accept a flagged settlement's cash-out data as it is (`{reason}`: why),
    e.g. a price nothing could confirm; it is split at once. 409 if it is not
    flagged or its data is incomplete (enter it with PUT .../cash-out)."""
    return await _settlement_action(
        accept_settlement(settlement_id, data.reason, op.user_id)
    )


@satmachineadmin_api_router.post(
    "/settlements/{settlement_id}/retry", response_model=Settlement
)
async def api_retry_settlement(settlement_id: str, op: WriteAccess) -> Settlement:
    """Retry failed payouts (and re-check a waiting settlement)."""
    return await _settlement_action(retry_settlement(settlement_id, op.user_id))


# ----------------------------------------------------------- reconciliations


@satmachineadmin_api_router.get(
    "/reconciliations",
    response_model=ReconciliationPage,
    openapi_extra=generate_filter_params_openapi(ReconciliationFilters),
)
async def api_get_reconciliations(
    _: ReadAccess,
    filters: Filters = Depends(filters_for(ReconciliationFilters, "created_at")),
) -> Page:
    page = await get_reconciliations(filters)
    page.data = [r.for_reader() for r in page.data]  # errors in their language
    return page


@satmachineadmin_api_router.get(
    "/reconciliations/{reconciliation_id}", response_model=Reconciliation
)
async def api_get_reconciliation(
    reconciliation_id: str, _: ReadAccess
) -> Reconciliation:
    rec = await get_reconciliation(reconciliation_id)
    if not rec:
        raise _not_found("reconciliation")
    return rec.for_reader()


@satmachineadmin_api_router.get(
    "/reconciliations/{reconciliation_id}/history", response_model=list[AuditEntry]
)
async def api_get_reconciliation_history(
    reconciliation_id: str, _: ReadAccess
) -> list[AuditEntry]:
    if not await get_reconciliation(reconciliation_id):
        raise _not_found("reconciliation")
    return await get_audit("reconciliation", reconciliation_id)


@satmachineadmin_api_router.post(
    "/reconciliations/{reconciliation_id}/resolve", response_model=Reconciliation
)
async def api_resolve_reconciliation(
    reconciliation_id: str, data: ResolveReconciliationData, op: WriteAccess
) -> Reconciliation:
    try:
        resolved = await resolve_reconciliation(
            reconciliation_id,
            data.action,
            op.user_id,
            wallet_id=data.wallet_id,
            client_id=data.client_id,
            note=data.note,
        )
        return resolved.for_reader()
    except LookupError as exc:
        raise _not_found("reconciliation") from exc
    except ValueError as exc:
        raise _bad_request(str(exc)) from exc
    except ProcessingError as exc:
        raise _conflict(str(exc)) from exc


# -------------------------------------------------------------------- config


@satmachineadmin_api_router.get("/config", response_model=PublicLamassuConfig | None)
async def api_get_config(_: ReadAccess) -> PublicLamassuConfig | None:
    config = await get_config()
    return config.public() if config else None


async def _check_wallets(
    fields: dict[str, Any], current: LamassuConfig | None = None
) -> None:
    """Wallets on this LNbits (not deleted). A new source wallet is neither a
    DCA client's wallet nor a commission partner's, as for a machine's own
    (views_api_machines): the sats waiting in a source wallet (orphans,
    commission kept, scheduled fixed-mode payouts) would be the client's or
    the partner's to spend. The configured commission wallet may be the
    source wallet: the commission is then kept there."""
    wallets = {}
    for key in ("source_wallet_id", "commission_wallet_id"):
        wallet_id = fields.get(key)
        if not wallet_id:
            continue
        wallet = await get_wallet(wallet_id)
        if not wallet or wallet.deleted:
            raise _bad_request(text("field.wallet_not_found", field=key))
        wallets[key] = wallet
    source = fields.get("source_wallet_id") or (
        current.source_wallet_id if current else None
    )
    # LNbits' share of a source wallet receives into the source itself: as
    # the commission wallet the commission would pay itself.
    commission = wallets.get("commission_wallet_id")
    if commission and receiving_wallet_id(commission) != commission.id:
        sources = await source_wallet_ids(None) | ({source} if source else set())
        if receiving_wallet_id(commission) in sources:
            raise _bad_request(
                text(
                    "config.commission_is_share_of_source",
                    source=receiving_wallet_id(commission),
                )
            )
    if "source_wallet_id" not in wallets or (
        current and current.source_wallet_id == source
    ):
        return
    if await get_client_by_wallet(source):
        raise _bad_request(text("config.source_is_client_wallet"))
    if source in await recipient_wallet_ids(None):
        raise _bad_request(text("config.source_is_partner_wallet"))
    try:
        await refuse_shares_of_source(source)
    except MessageError as exc:
        raise _bad_request(str(exc)) from exc


@satmachineadmin_api_router.post(
    "/config", status_code=HTTPStatus.CREATED, response_model=PublicLamassuConfig
)
async def api_create_config(
    data: CreateLamassuConfigData, op: WriteAccess
) -> PublicLamassuConfig:
    fields = data.dict(exclude_none=True)
    await _check_wallets(fields)
    _check_schedule(
        fields.get("fixed_delivery"),
        fields.get("fixed_delivery_time"),
        fields.get("fixed_delivery_times"),
    )
    config = await create_config(fields)
    await add_audit("config", config.id, "created", op.user_id, _redacted(fields))
    return config.public()


@satmachineadmin_api_router.put(
    "/config/{config_id}", response_model=PublicLamassuConfig
)
async def api_update_config(
    config_id: str, data: UpdateLamassuConfigData, op: WriteAccess
) -> PublicLamassuConfig:
    config = await get_config_by_id(config_id)
    if not config:
        raise _not_found("config")
    # A secret left out or null keeps its value (the page never has it to send).
    fields = {
        k: v
        for k, v in data.dict(exclude_unset=True).items()
        if v is not None or k not in SECRET_FIELDS
    }
    nulls = [
        k for k, v in fields.items() if v is None and not CONFIG_FIELDS[k].allow_none
    ]
    if nulls:
        raise _bad_request(text("field.may_not_be_null", fields=", ".join(nulls)))
    await _check_wallets(fields, config)
    # The schedule is checked whole, with the fields not sent as read: those
    # must still be so when written, or two saves each valid alone (one sets
    # "daily" with the time it read, the other clears that time) store a
    # daily schedule with no time, which has no delivery slot at all.
    expect = (
        {k: getattr(config, k) for k in SCHEDULE_FIELDS if k not in fields}
        if any(k in fields for k in SCHEDULE_FIELDS)
        else {}
    )
    merged = config.copy(update=fields)
    _check_schedule(
        merged.fixed_delivery,
        merged.fixed_delivery_time,
        merged.fixed_delivery_times,
    )
    for key, value in fields.items():
        setattr(config, key, getattr(value, "value", value))
    # Only the fields sent: a wallet another operator saved meanwhile, or the
    # poll's bookkeeping, is not put back to what this request read.
    written = await update_config_fields(
        config.id, {k: getattr(config, k) for k in fields}, expect
    )
    config = await get_config_by_id(config_id)
    if not config:
        raise _not_found("config")
    if not written:
        raise _conflict(text("config.changed_meanwhile"))
    await add_audit("config", config.id, "updated", op.user_id, _redacted(fields))
    return config.public()


@satmachineadmin_api_router.delete(
    "/config/{config_id}", response_model=SuccessResponse
)
async def api_delete_config(config_id: str, op: WriteAccess) -> dict:
    if not await get_config_by_id(config_id):
        raise _not_found("config")
    await delete_config(config_id)
    await add_audit("config", config_id, "deleted", op.user_id, {})
    return {"success": True}


def _check_schedule(delivery: Any, at: str | None, times: int | None) -> None:
    error = schedule_error(getattr(delivery, "value", delivery), at, times)
    if error:
        raise _bad_request(error)


def _redacted(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k in SECRET_FIELDS and v else v) for k, v in fields.items()}


# ------------------------------------------------------------ dry run, summary


class DryRunAllocation(BaseModel):
    client_id: str
    username: str | None
    sats: int
    fiat: Decimal
    capped: bool
    mode: str = "flow"
    limited: bool = False  # took all that was left of its daily allowance


class DryRunFixedClient(BaseModel):
    """A fixed-mode client in the dry run: its balance and what is left of its
    daily allowance (the cap on its share)."""

    client_id: str
    username: str | None
    balance: Decimal
    allowance_left: Decimal


class DryRunResult(BaseModel):
    settlement_sats: int
    principal_sats: int
    commission_sats: int
    fiat_amount: Decimal
    fiat_code: str
    exchange_rate: float
    capped: bool
    orphan_sats: int
    orphan_fiat: Decimal
    allocations: list[DryRunAllocation]
    # How the commission would be split among its recipients (#14).
    commission_parts: list[CommissionPart] = []
    fixed_clients: list[DryRunFixedClient] = []
    moved_money: bool = False


document_nullable(DryRunAllocation, DryRunFixedClient, DryRunResult)


@satmachineadmin_api_router.post("/test-transaction", response_model=DryRunResult)
async def api_test_transaction(
    data: TestTransactionData, _: WriteAccess
) -> DryRunResult:
    """A dry run: how a settlement with these numbers would be split among the
    current balances. Nothing is paid and nothing is recorded."""
    from .crud import db, get_clients_by_ids

    config = await get_config()
    now = utc_now()
    balances = await get_flow_balances(
        db,
        data.fiat_code,
        now,
        source_wallets=await source_wallet_ids(config),
        fixed=fixed_day(config, now),
    )
    try:
        plan = dry_run(data, balances)
    except AllocationError as exc:
        raise _bad_request(str(exc)) from exc
    recipients = await recipients_for(data.device_id, config)
    shown = {a.client_id for a in plan.allocations}
    shown |= {b.client_id for b in balances if b.cap is not None}
    names = {id_: c.username for id_, c in (await get_clients_by_ids(shown)).items()}
    fixed_ids = {b.client_id for b in balances if b.cap is not None}
    return DryRunResult(
        settlement_sats=plan.settlement_sats,
        principal_sats=plan.principal_sats,
        commission_sats=plan.commission_sats,
        fiat_amount=plan.fiat_amount,
        fiat_code=data.fiat_code,
        exchange_rate=plan.rate_sats_per_fiat(),
        capped=plan.capped,
        orphan_sats=plan.orphan_sats,
        orphan_fiat=plan.orphan_fiat,
        allocations=[
            DryRunAllocation(
                client_id=a.client_id,
                username=names.get(a.client_id),
                sats=a.sats,
                fiat=a.fiat,
                capped=a.capped,
                mode="fixed" if a.client_id in fixed_ids else "flow",
                limited=a.limited,
            )
            for a in plan.allocations
        ],
        commission_parts=dry_run_parts(plan.commission_sats, recipients),
        fixed_clients=[
            DryRunFixedClient(
                client_id=b.client_id,
                username=names.get(b.client_id),
                balance=b.balance,
                allowance_left=b.cap,
            )
            for b in balances
            if b.cap is not None
        ],
    )


class ScheduledDeliveries(BaseModel):
    """Fixed-mode deliveries: the schedule, the payouts waiting for their
    slot (reserved; their sats still in the source wallet) and the latest
    slots."""

    fixed_delivery: str
    fixed_delivery_time: str | None
    fixed_delivery_times: int | None
    time_zone: str
    next_slot: datetime | None
    scheduled_sats: int  # every waiting payout's, however many
    scheduled_fiat: Decimal
    scheduled_count: int = 0  # how many wait (`payouts` lists the first 500)
    payouts: list[PayoutView]
    slots: list[DeliverySlot]


document_nullable(ScheduledDeliveries)


@satmachineadmin_api_router.get("/fixed/scheduled", response_model=ScheduledDeliveries)
async def api_scheduled_deliveries(_: ReadAccess) -> ScheduledDeliveries:
    config = await get_config()
    schedule = Schedule.of(config)
    payouts = await get_scheduled_payouts()
    count, sats, fiat = await get_scheduled_totals()
    return ScheduledDeliveries(
        fixed_delivery=schedule.delivery,
        fixed_delivery_time=schedule.at,
        fixed_delivery_times=schedule.times,
        time_zone=config.zone_name if config else server_time_zone(),
        next_slot=schedule.next_slot(utc_now()),
        scheduled_sats=sats,
        scheduled_fiat=fiat,
        scheduled_count=count,
        payouts=payouts,
        slots=await get_delivery_slots(),
    )


class DayFigure(BaseModel):
    day: str
    sats: int


@satmachineadmin_api_router.get(
    "/stats/distributed-per-day", response_model=list[DayFigure]
)
async def api_distributed_per_day(
    _: ReadAccess, days: int = Query(90, ge=1, le=3660)
) -> list[dict]:
    """Sats distributed to clients per UTC day over the last `days` days (the
    overview chart), summed on the server however many settlements there are."""
    return await get_distributed_per_day(utc_now() - timedelta(days=days))


@satmachineadmin_api_router.get("/summary", response_model=Summary)
async def api_summary(_: ReadAccess) -> dict:
    from .crud import count_settlements_by_status
    from .locks import lock_status
    from .tasks import listener_status, recovery_status

    lock_problem = lock_status["problem"]
    config = await get_config()
    totals = await get_totals()
    source_balance = None
    if config and config.source_wallet_id:
        wallet = await get_wallet(config.source_wallet_id)
        source_balance = wallet.balance if wallet else None
    figures = await get_machine_figures()
    names = {m.device_id: m.name for m in await get_machines()}
    return {
        **totals,
        # Per machine (#14); device_id '' : settlements naming no machine.
        "machines": [
            {"device_id": device, "name": names.get(device), **f.dict()}
            for device, f in sorted(figures.items())
        ],
        "source_wallet_balance_sats": source_balance,
        "settlements_by_status": await count_settlements_by_status(),
        "listener": listener_status,
        "recovery": recovery_status,
        "lock_problem": lock_problem.render() if lock_problem else None,
        "last_poll_time": config.last_poll_time if config else None,
        "last_successful_poll": config.last_successful_poll if config else None,
    }


@satmachineadmin_api_router.post("/manual-poll")
async def api_manual_poll(_: WriteAccess) -> dict:
    """Parity: run the recovery pass now (scan the source wallet for missed
    payments, advance waiting settlements, retry payouts). Waiting
    settlements are looked up now, whatever their back-off: the operator
    asked."""
    from .tasks import run_recovery

    return await run_recovery(look_up_now=True)


# ----------------------------------------------------------------- CSV export


# A spreadsheet runs a cell starting with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """OWASP's CSV-injection rule: text that a spreadsheet would run as a
    formula (usernames, notes, memos are typed by others) gets a leading '."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_response(rows: list[BaseModel], name: str) -> StreamingResponse:
    buffer = io.StringIO()
    if rows:
        # Texts stay in English, as stored; their messages (m017) are not data.
        fields = [k for k in rows[0].dict() if not k.endswith("_msg")]
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            data = row.dict()
            writer.writerow({k: csv_cell(data[k]) for k in fields})
    buffer.seek(0)
    return StreamingResponse(
        iter([buffer.getvalue()]),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


_CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}}
}


def _machine_filtered(filters: StableFilters, device_id: str) -> StableFilters:
    from lnbits.db import Filter

    filters.filters = [Filter.parse_query("device_id", [device_id], SettlementFilters)]
    return filters


async def _every_row(
    fetch: Callable, sortby: str, device_id: str | None = None
) -> list[BaseModel]:
    """The whole list, 1000 rows per query, oldest first (stable paging);
    with `device_id`, one machine's rows only."""
    rows: list[BaseModel] = []
    while True:
        filters = StableFilters(
            limit=1000, offset=len(rows), sortby=sortby, direction="asc"
        )
        if device_id is not None:
            filters = _machine_filtered(filters, device_id)
        page = await fetch(filters)
        rows.extend(page.data)
        if not page.data or len(rows) >= page.total:
            return rows


@satmachineadmin_api_router.get(
    "/export/payouts.csv", response_class=StreamingResponse, responses=_CSV
)
async def api_export_payouts(
    _: ReadAccess, device_id: str | None = Query(None, max_length=200)
) -> StreamingResponse:
    """Every payout; with `device_id`, those of one machine's settlements."""
    rows = await _every_row(get_payments, "created_at", device_id)
    return _csv_response(rows, "payouts")


@satmachineadmin_api_router.get(
    "/export/settlements.csv", response_class=StreamingResponse, responses=_CSV
)
async def api_export_settlements(
    _: ReadAccess, device_id: str | None = Query(None, max_length=200)
) -> StreamingResponse:
    """Every settlement; with `device_id`, one machine's."""
    rows = await _every_row(get_settlements, "paid_at", device_id)
    return _csv_response(rows, "settlements")


@satmachineadmin_api_router.get(
    "/export/reconciliations.csv", response_class=StreamingResponse, responses=_CSV
)
async def api_export_reconciliations(
    _: ReadAccess, device_id: str | None = Query(None, max_length=200)
) -> StreamingResponse:
    """Every orphan; with `device_id`, one machine's."""
    rows = await _every_row(get_reconciliations, "created_at", device_id)
    return _csv_response(rows, "reconciliations")
