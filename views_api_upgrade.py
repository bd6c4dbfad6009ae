"""The upgrade line (upgrade_line.py): payments into the source wallet from
before this extension first ran, which the operator processes or dismisses one
by one."""

from __future__ import annotations

from collections.abc import Awaitable
from http import HTTPStatus

from fastapi import APIRouter, Depends, HTTPException
from lnbits.db import Filters
from lnbits.helpers import generate_filter_params_openapi

from .auth import ReadAccess, WriteAccess
from .messages import text
from .models import API_ERROR_RESPONSES, DismissSettlementData, Settlement
from .transaction_processor import ProcessingError
from .upgrade_line import (
    UpgradeLineView,
    dismiss_before_upgrade,
    get_upgrade_line_view,
    process_before_upgrade,
)
from .views_api import SettlementFilters, filters_for

satmachineadmin_upgrade_router = APIRouter(
    prefix="/api/v1/dca",
    responses=API_ERROR_RESPONSES,
)


async def _action(coro: Awaitable[Settlement]) -> Settlement:
    try:
        return (await coro).for_reader()  # its detail in the reader's language
    except LookupError as exc:
        raise HTTPException(HTTPStatus.NOT_FOUND, text("not_found.settlement")) from exc
    except ProcessingError as exc:
        raise HTTPException(HTTPStatus.CONFLICT, str(exc)) from exc


@satmachineadmin_upgrade_router.get(
    "/upgrade-line",
    response_model=UpgradeLineView,
    openapi_extra=generate_filter_params_openapi(SettlementFilters),
)
async def api_get_upgrade_line(
    _: ReadAccess,
    filters: Filters = Depends(filters_for(SettlementFilters, "paid_at")),
) -> UpgradeLineView:
    """When this extension first ran here (`first_run_at`), and the settlements
    paid into the source wallet before then (status `before_upgrade`): the old
    extension's to handle, so none is split unless the operator processes it."""
    view = await get_upgrade_line_view(filters)
    view.data = [s.for_reader() for s in view.data]  # details in their language
    return view


@satmachineadmin_upgrade_router.post(
    "/upgrade-line/{settlement_id}/process", response_model=Settlement
)
async def api_process_before_upgrade(settlement_id: str, op: WriteAccess) -> Settlement:
    """The old extension never handled this payment: process it like a new
    settlement (it becomes `pending`, then is looked up and split). A cash-out
    whose Lamassu id the old extension recorded is still never split again."""
    return await _action(process_before_upgrade(settlement_id, op.user_id))


@satmachineadmin_upgrade_router.post(
    "/upgrade-line/{settlement_id}/dismiss", response_model=Settlement
)
async def api_dismiss_before_upgrade(
    settlement_id: str, data: DismissSettlementData, op: WriteAccess
) -> Settlement:
    """The old extension handled this payment (or it is no ATM sale): never
    split it. The reason is kept with the settlement and in its audit trail."""
    return await _action(dismiss_before_upgrade(settlement_id, data.reason, op.user_id))
