"""Who may use the operator API: one rule, in one place.

* LNbits super user / admins, by session cookie or bearer token: read and write.
* The admin key (X-Api-Key) of a wallet owned by such a user: read and write.
* The invoice key of such a wallet: read only.
* Anyone else (ordinary users' keys or tokens): 403. No credentials: 401.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from lnbits.core.crud import get_wallet_for_key
from lnbits.decorators import (
    _check_account_exists,
    check_access_token,
    check_user_extension_access,
)
from lnbits.settings import settings

from .messages import text

EXTENSION_ID = "satmachineadmin"


@dataclass
class Operator:
    user_id: str
    via: str  # "token", "admin_key" or "invoice_key"
    can_write: bool


async def _ensure_enabled(user_id: str) -> None:
    status = await check_user_extension_access(user_id, EXTENSION_ID)
    if not status.success:
        raise HTTPException(HTTPStatus.FORBIDDEN, status.message)


async def operator_read(
    request: Request,
    access_token: Annotated[str | None, Depends(check_access_token)],
) -> Operator:
    key = request.headers.get("X-API-KEY") or request.query_params.get("api-key")
    if key:
        # A NUL cannot be in any key, and PostgreSQL would fail on it (500).
        wallet = None if "\x00" in key else await get_wallet_for_key(key)
        if not wallet:
            raise HTTPException(HTTPStatus.UNAUTHORIZED, text("auth.invalid_api_key"))
        if not settings.is_admin_user(wallet.user):
            raise HTTPException(HTTPStatus.FORBIDDEN, text("auth.admins_only"))
        await _ensure_enabled(wallet.user)
        is_admin_key = key == wallet.adminkey
        return Operator(
            wallet.user, "admin_key" if is_admin_key else "invoice_key", is_admin_key
        )
    if access_token:
        account = await _check_account_exists(request, access_token)
        if not settings.is_admin_user(account.id):
            raise HTTPException(HTTPStatus.FORBIDDEN, text("auth.admins_only"))
        await _ensure_enabled(account.id)
        return Operator(account.id, "token", True)
    raise HTTPException(HTTPStatus.UNAUTHORIZED, text("auth.missing_credentials"))


async def operator_write(
    operator: Annotated[Operator, Depends(operator_read)],
) -> Operator:
    if not operator.can_write:
        raise HTTPException(HTTPStatus.FORBIDDEN, text("auth.invoice_key_read_only"))
    return operator


# What a request may carry, checked once the caller is known (an anonymous
# request learns nothing and costs nothing): PostgreSQL cannot store text with a
# NUL character (it would answer 500), and a body nested hundreds deep used to
# exhaust the recursion of this check (a 500 and thousands of log lines).
MAX_BODY_BYTES = 256 * 1024
MAX_NESTING = 32


async def check_request_content(request: Request) -> None:
    texts: list[Any] = [dict(request.path_params)]
    texts.append(list(request.query_params.multi_items()))
    if request.method not in ("GET", "HEAD", "DELETE"):
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                text("request.body_too_large", kb=MAX_BODY_BYTES // 1024),
            )
        try:
            texts.append(json.loads(body or b"null"))
        except (ValueError, RecursionError):
            pass  # not JSON: the body's own validation answers
    if _has_nul(texts):
        raise HTTPException(HTTPStatus.BAD_REQUEST, text("request.nul_character"))


def _has_nul(root: Any) -> bool:
    """Walk the value without recursion, refusing deep nesting."""
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
            continue
        if isinstance(value, dict | list | tuple):
            if depth > MAX_NESTING:
                raise HTTPException(
                    HTTPStatus.BAD_REQUEST,
                    text("request.too_deep", levels=MAX_NESTING),
                )
            items = (
                [*value.keys(), *value.values()] if isinstance(value, dict) else value
            )
            stack.extend((item, depth + 1) for item in items)
    return False


async def operator_read_checked(
    request: Request,
    operator: Annotated[Operator, Depends(operator_read)],
) -> Operator:
    await check_request_content(request)
    return operator


async def operator_write_checked(
    request: Request,
    operator: Annotated[Operator, Depends(operator_write)],
) -> Operator:
    await check_request_content(request)
    return operator


ReadAccess = Annotated[Operator, Depends(operator_read_checked)]
WriteAccess = Annotated[Operator, Depends(operator_write_checked)]
