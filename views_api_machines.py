"""Machines and commission recipients (#14) under /satmachineadmin/api/v1/dca.

Every endpoint needs operator access (auth.py). Bad input answers 4xx and
changes nothing."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import APIRouter, HTTPException, Query
from lnbits.core.crud import get_wallet
from lnbits.helpers import urlsafe_short_hash

from .auth import ReadAccess, WriteAccess
from .crud import add_audit, get_audit, get_client_by_wallet, get_config
from .machines import (
    create_machine,
    get_all_machine_recipients,
    get_commission_payout,
    get_commission_payouts,
    get_machine,
    get_machine_figures,
    get_machines,
    get_recent_commission_payouts,
    get_recipients,
    recipient_wallet_ids,
    refuse_shares_of_source,
    replace_recipients,
    update_machine_fields,
    validate_recipients,
)
from .messages import MessageError, text
from .models import (
    API_ERROR_RESPONSES,
    AuditEntry,
    CommissionPayout,
    CommissionRecipient,
    CreateMachineData,
    Machine,
    MachineFigures,
    MachineView,
    SetRecipientsData,
    Settlement,
    UpdateMachineData,
    utc_now,
)
from .transaction_processor import ProcessingError, retry_settlement

satmachineadmin_machines_router = APIRouter(
    prefix="/api/v1/dca",
    responses=API_ERROR_RESPONSES,
)


def _bad(detail: str) -> HTTPException:
    """400; `detail` is a text already in the reader's language (`text(...)`)."""
    return HTTPException(HTTPStatus.BAD_REQUEST, detail)


async def _check_source_wallet(wallet_id: str | None) -> None:
    """A machine's source wallet: on this LNbits, not deleted, not a client's
    and not a commission recipient's (a settlement would pay itself)."""
    if not wallet_id:
        return
    wallet = await get_wallet(wallet_id)
    if not wallet or wallet.deleted:
        raise _bad(text("field.wallet_not_found", field="source_wallet_id"))
    if await get_client_by_wallet(wallet_id):
        raise _bad(text("machine.source_wallet_is_client"))
    if wallet_id in await recipient_wallet_ids(await get_config()):
        raise _bad(text("machine.source_wallet_gets_commission"))
    try:
        await refuse_shares_of_source(wallet_id)
    except MessageError as exc:
        raise _bad(str(exc)) from exc


async def _views(machines: list[Machine]) -> list[MachineView]:
    figures = await get_machine_figures()
    own = await get_all_machine_recipients()
    return [
        MachineView(
            **m.dict(),
            is_new=m.reviewed_at is None,
            figures=figures.get(m.device_id, MachineFigures()),
            commission_recipients=own.get(m.id, []),
        )
        for m in machines
    ]


@satmachineadmin_machines_router.get("/machines", response_model=list[MachineView])
async def api_get_machines(
    _: ReadAccess, new: bool | None = Query(None)
) -> list[MachineView]:
    """Every machine with its figures (settled, commission, distributed, open
    orphans, waiting) and its own commission recipients (empty: the global
    set). `new=true`: only those the operator has not named yet."""
    machines = await get_machines()
    if new is not None:
        machines = [m for m in machines if (m.reviewed_at is None) == new]
    return await _views(machines)


@satmachineadmin_machines_router.post(
    "/machines", status_code=HTTPStatus.CREATED, response_model=MachineView
)
async def api_create_machine(data: CreateMachineData, op: WriteAccess) -> MachineView:
    """Add a machine before its first settlement, e.g. to give it a source
    wallet of its own (payments into it are then settlements)."""
    device_id = data.device_id.strip()
    if not device_id:
        raise _bad(text("machine.device_id_blank"))
    await _check_source_wallet(data.source_wallet_id)
    now = utc_now()
    machine = Machine(
        id=urlsafe_short_hash(),
        device_id=device_id,
        name=(data.name or "").strip() or None,
        location=(data.location or "").strip() or None,
        source_wallet_id=data.source_wallet_id or None,
        reviewed_at=now,
        created_at=now,
        updated_at=now,
    )
    if not await create_machine(machine):
        raise HTTPException(HTTPStatus.CONFLICT, text("machine.exists"))
    await add_audit("machine", machine.id, "created", op.user_id, data.dict())
    [view] = await _views([machine])
    return view


@satmachineadmin_machines_router.get(
    "/machines/{machine_id}", response_model=MachineView
)
async def api_get_machine(machine_id: str, _: ReadAccess) -> MachineView:
    machine = await get_machine(machine_id)
    if not machine:
        raise HTTPException(HTTPStatus.NOT_FOUND, text("not_found.machine"))
    [view] = await _views([machine])
    return view


@satmachineadmin_machines_router.put(
    "/machines/{machine_id}", response_model=MachineView
)
async def api_update_machine(
    machine_id: str, data: UpdateMachineData, op: WriteAccess
) -> MachineView:
    """Name it, say where it is, and which source wallet its payments arrive
    in. Saving marks it as reviewed (no longer new)."""
    machine = await get_machine(machine_id)
    if not machine:
        raise HTTPException(HTTPStatus.NOT_FOUND, text("not_found.machine"))
    fields = data.dict(exclude_unset=True)
    if "source_wallet_id" in fields and fields["source_wallet_id"] != (
        machine.source_wallet_id
    ):
        await _check_source_wallet(fields["source_wallet_id"])
    changes = {key: (value or "").strip() or None for key, value in fields.items()}
    changes["reviewed_at"] = machine.reviewed_at or utc_now()
    await update_machine_fields(machine.id, changes)
    machine = await get_machine(machine_id)
    if not machine:
        raise HTTPException(HTTPStatus.NOT_FOUND, text("not_found.machine"))
    await add_audit("machine", machine.id, "updated", op.user_id, fields)
    [view] = await _views([machine])
    return view


# ------------------------------------------------------- commission recipients


@satmachineadmin_machines_router.get(
    "/commission-recipients", response_model=list[CommissionRecipient]
)
async def api_get_global_recipients(_: ReadAccess) -> list[CommissionRecipient]:
    """The global set. While none is stored, the configured commission wallet
    is shown as the 100 % recipient (id 'config')."""
    rows = await get_recipients("")
    if rows:
        return rows
    config = await get_config()
    if config and config.commission_wallet_id:
        return [
            CommissionRecipient(
                id="config",
                wallet_id=config.commission_wallet_id,
                percent="100",
                label="commission wallet",
                created_at=config.created_at,
                updated_at=config.updated_at,
            )
        ]
    return []


async def _set_recipients(
    machine_id: str, data: SetRecipientsData, actor: str
) -> list[CommissionRecipient]:
    try:
        recipients = await validate_recipients(data.recipients, await get_config())
    except ValueError as exc:
        raise _bad(str(exc)) from exc
    await replace_recipients(machine_id, recipients)
    await add_audit(
        "commission_recipients",
        machine_id or "global",
        "set",
        actor,
        {"recipients": [r.dict() for r in data.recipients]},
    )
    return await get_recipients(machine_id)


@satmachineadmin_machines_router.put(
    "/commission-recipients", response_model=list[CommissionRecipient]
)
async def api_set_global_recipients(
    data: SetRecipientsData, op: WriteAccess
) -> list[CommissionRecipient]:
    """Replace the global set: wallets on this LNbits (not a source wallet),
    exact percentages adding up to exactly 100. An empty list goes back to the
    configured commission wallet. Applies to settlements split from now on."""
    return await _set_recipients("", data, op.user_id)


@satmachineadmin_machines_router.get(
    "/machines/{machine_id}/commission-recipients",
    response_model=list[CommissionRecipient],
)
async def api_get_machine_recipients(
    machine_id: str, _: ReadAccess
) -> list[CommissionRecipient]:
    if not await get_machine(machine_id):
        raise HTTPException(HTTPStatus.NOT_FOUND, text("not_found.machine"))
    return await get_recipients(machine_id)


@satmachineadmin_machines_router.put(
    "/machines/{machine_id}/commission-recipients",
    response_model=list[CommissionRecipient],
)
async def api_set_machine_recipients(
    machine_id: str, data: SetRecipientsData, op: WriteAccess
) -> list[CommissionRecipient]:
    """This machine's own set (overrides the global one); empty: the global."""
    if not await get_machine(machine_id):
        raise HTTPException(HTTPStatus.NOT_FOUND, text("not_found.machine"))
    return await _set_recipients(machine_id, data, op.user_id)


# ---------------------------------------------------------- commission payouts


@satmachineadmin_machines_router.get(
    "/commission-payouts", response_model=list[CommissionPayout]
)
async def api_get_commission_payouts(
    _: ReadAccess,
    settlement_id: str | None = Query(None, max_length=64),
    status: str | None = Query(None, max_length=20),
    limit: int = Query(100, ge=1, le=1000),
) -> list[CommissionPayout]:
    """The parts of one settlement's commission; without `settlement_id`, the
    most recent parts (e.g. `status=failed`)."""
    if settlement_id:
        parts = await get_commission_payouts(settlement_id)
        return [p.for_reader() for p in parts if not status or p.status == status]
    return [p.for_reader() for p in await get_recent_commission_payouts(status, limit)]


@satmachineadmin_machines_router.get(
    "/commission-payouts/{part_id}/history", response_model=list[AuditEntry]
)
async def api_commission_payout_history(
    part_id: str, _: ReadAccess
) -> list[AuditEntry]:
    """Failed attempts and retries of one part (its status, attempts and last
    error are on the part itself)."""
    if not await get_commission_payout(part_id):
        raise HTTPException(HTTPStatus.NOT_FOUND, text("not_found.commission_payout"))
    return await get_audit("commission_payout", part_id)


@satmachineadmin_machines_router.post(
    "/commission-payouts/{part_id}/retry", response_model=Settlement
)
async def api_retry_commission_payout(part_id: str, op: WriteAccess) -> Settlement:
    """Retry a failed part (with the rest of its settlement's open payouts)."""
    part = await get_commission_payout(part_id)
    if not part:
        raise HTTPException(HTTPStatus.NOT_FOUND, text("not_found.commission_payout"))
    if part.status != "failed":
        raise HTTPException(
            HTTPStatus.CONFLICT,
            text("commission_payout.nothing_to_retry", status=part.status),
        )
    await add_audit("commission_payout", part.id, "retry", op.user_id, {})
    try:
        return (await retry_settlement(part.settlement_id, op.user_id)).for_reader()
    except LookupError as exc:
        raise HTTPException(HTTPStatus.NOT_FOUND, text("not_found.settlement")) from exc
    except ProcessingError as exc:
        raise HTTPException(HTTPStatus.CONFLICT, str(exc)) from exc
