"""Alerts (alerts.py) and the drift figures (drift.py) for the dashboard:
list and acknowledge alerts, their settings, and the per-currency drift."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from http import HTTPStatus
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from lnbits.db import FilterModel, Filters, Page
from lnbits.helpers import generate_filter_params_openapi
from pydantic import BaseModel

from .alerts import (
    EVENT_KINDS,
    alert_message,
    alert_title,
    check_alerts,
    lamassu_health,
    notification_channels,
)
from .auth import ReadAccess, WriteAccess
from .crud import (
    acknowledge_alert,
    add_audit,
    get_alert,
    get_alert_settings,
    get_alerts,
    get_config,
    set_alert_settings,
)
from .drift import compute_drift, refresh_lamassu_cash
from .messages import Message, current_language, text
from .models import (
    API_ERROR_RESPONSES,
    Alert,
    AlertPage,
    AlertSettings,
    UpdateAlertSettings,
    document_nullable,
    utc_now,
)
from .views_api import filters_for, search_fields

satmachineadmin_alerts_router = APIRouter(
    prefix="/api/v1/dca",
    responses=API_ERROR_RESPONSES,
)


def _for_reader(alert: Alert) -> Alert:
    """The alert with its title and message in the request's language (rows
    written before m018: in English, as stored)."""
    lang = current_language()
    alert.title = alert_title(alert, lang)
    alert.message = alert_message(alert, lang)
    return alert


class AlertFilters(FilterModel):
    __search_fields__ = search_fields("title", "message", "subject", "kind")
    __sort_fields__ = ["opened_at", "cleared_at", "kind"]
    kind: str | None
    audience: str | None


@satmachineadmin_alerts_router.get(
    "/alerts",
    response_model=AlertPage,
    openapi_extra=generate_filter_params_openapi(AlertFilters),
)
async def api_get_alerts(
    _: ReadAccess,
    filters: Filters = Depends(filters_for(AlertFilters, "opened_at")),
    state: Literal["open", "all"] = Query("all"),
) -> Page:
    """Alerts, newest first; `state=open`: only those whose condition holds
    (or, for events, not yet acknowledged). Titles and messages are in the
    request's language (searching matches their English)."""
    page = await get_alerts(filters, open_only=state == "open")
    page.data = [_for_reader(alert) for alert in page.data]
    return page


@satmachineadmin_alerts_router.post(
    "/alerts/{alert_id}/acknowledge", response_model=Alert
)
async def api_acknowledge_alert(alert_id: str, op: WriteAccess) -> Alert:
    """The operator has seen it. A standing condition stays open (and is not
    sent again) until it clears; an event is closed."""
    alert = await get_alert(alert_id)
    if not alert:
        raise HTTPException(HTTPStatus.NOT_FOUND, text("not_found.alert"))
    clear = alert.kind in EVENT_KINDS
    if not await acknowledge_alert(alert.id, op.user_id, utc_now(), clear):
        raise HTTPException(HTTPStatus.CONFLICT, text("alert.already_acknowledged"))
    await add_audit("alert", alert.id, "acknowledged", op.user_id, {})
    return _for_reader(await get_alert(alert.id) or alert)


class AlertStatus(BaseModel):
    channels: dict[str, bool]
    open_alerts: int
    unacknowledged: int
    lamassu: dict[str, Any]


@satmachineadmin_alerts_router.get("/alerts-status", response_model=AlertStatus)
async def api_alert_status(_: ReadAccess) -> dict:
    """Which of LNbits' notification channels are on, and the open counts."""
    from .crud import get_open_alerts

    open_alerts = [a for a in await get_open_alerts() if a.audience == "operator"]
    return {
        "channels": notification_channels(),
        "open_alerts": len(open_alerts),
        "unacknowledged": sum(1 for a in open_alerts if not a.acknowledged_at),
        "lamassu": dict(lamassu_health),
    }


class AlertCheck(BaseModel):
    opened: int
    cleared: int
    sent: int


@satmachineadmin_alerts_router.post("/alerts/check", response_model=AlertCheck)
async def api_check_alerts(_: WriteAccess) -> dict:
    """Evaluate every alert now (the recovery pass does it every minute)."""
    return await check_alerts()


@satmachineadmin_alerts_router.get("/alert-settings", response_model=AlertSettings)
async def api_get_alert_settings(_: ReadAccess) -> AlertSettings:
    return await get_alert_settings()


@satmachineadmin_alerts_router.put("/alert-settings", response_model=AlertSettings)
async def api_update_alert_settings(
    data: UpdateAlertSettings, op: WriteAccess
) -> AlertSettings:
    current = await get_alert_settings()
    changes = {k: v for k, v in data.dict(exclude_unset=True).items() if v is not None}
    updated = current.copy(update=changes)
    await set_alert_settings(updated)
    await add_audit("alert_settings", "settings", "updated", op.user_id, changes)
    return updated


class CurrencyDrift(BaseModel):
    currency: str
    tracked: Decimal
    machine_cash: Decimal | None
    untracked: Decimal | None
    orphan_fiat_7d: Decimal


class WeekOrphans(BaseModel):
    week: str
    currency: str
    fiat: Decimal


class CashUnit(BaseModel):
    unit: str | None = None  # Lamassu: cassette1..4, recycler1..6
    denomination: Decimal
    count: int


class MachineCash(BaseModel):
    source: str  # lamassu or bitspire
    machine: str  # Lamassu device id, or bitSpire machine npub
    name: str | None
    currency: str | None
    cassettes: list[CashUnit]
    total: Decimal | None  # None: unreadable (see error)
    reported_at: datetime | None
    error: str | None


class DriftReport(BaseModel):
    currencies: list[CurrencyDrift]
    machines: list[MachineCash]
    weekly_orphans: list[WeekOrphans]
    lamassu_read_at: datetime | None = None
    lamassu_error: str | None = None


document_nullable(
    AlertCheck, AlertStatus, CashUnit, MachineCash, CurrencyDrift, DriftReport
)


@satmachineadmin_alerts_router.get("/drift", response_model=DriftReport)
async def api_drift(_: ReadAccess, refresh: bool = Query(False)) -> dict[str, Any]:
    """Per currency: tracked client balances, cash the machines report, the
    difference (untracked cash), and orphan fiat per week. `refresh` reads
    the Lamassu machines now instead of the recovery pass's last reading."""
    if refresh:
        await refresh_lamassu_cash(await get_config(), force=True)
    report = await compute_drift()
    lang = current_language()
    report["machines"] = [
        {
            **{k: v for k, v in machine.items() if k != "error_msg"},
            "error": _machine_error(machine, lang),
        }
        for machine in report["machines"]
    ]
    return report


def _machine_error(machine: dict[str, Any], lang: str) -> str | None:
    """Why a machine's cash is unreadable, in the reader's language."""
    message = machine.get("error_msg")
    return message.render(lang) if isinstance(message, Message) else machine["error"]
