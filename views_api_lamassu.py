"""The Lamassu connection test: each step the extension depends on, with a
message for the operator. Its own module so the Lamassu driver stays out of the
rest of the API."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from .auth import WriteAccess
from .crud import get_config, set_config_timestamps
from .lamassu import check_connection
from .lamassu_source import settings_from_config
from .messages import text
from .models import API_ERROR_RESPONSES, utc_now

satmachineadmin_lamassu_router = APIRouter(
    prefix="/api/v1/dca",
    responses=API_ERROR_RESPONSES,
)


class ConnectionStepView(BaseModel):
    name: str
    ok: bool
    message: str


class ConnectionTestResult(BaseModel):
    success: bool
    message: str
    steps: list[ConnectionStepView]


@satmachineadmin_lamassu_router.post(
    "/test-connection", response_model=ConnectionTestResult
)
async def api_test_connection(_: WriteAccess) -> ConnectionTestResult:
    """Connect to the configured Lamassu database (through the SSH tunnel when
    configured): tunnel, login, table access, row count, server time. Read
    only; the result is remembered on the config."""
    config = await get_config()
    if not config:
        raise HTTPException(HTTPStatus.NOT_FOUND, text("config.none_yet"))
    if not config.lamassu_configured:
        raise HTTPException(HTTPStatus.BAD_REQUEST, text("config.lamassu_incomplete"))
    steps = await check_connection(settings_from_config(config))
    success = bool(steps) and all(step.ok for step in steps)
    await set_config_timestamps(
        config.id, test_connection_last=utc_now(), test_connection_success=success
    )
    failed = next((step for step in steps if not step.ok), None)
    return ConnectionTestResult(
        success=success,
        message=(
            text("lamassu.all_passed")
            if success
            else (
                f"{failed.name}: {failed.message}"
                if failed
                else text("lamassu.no_steps")
            )
        ),
        steps=[ConnectionStepView(**vars(step)) for step in steps],
    )
