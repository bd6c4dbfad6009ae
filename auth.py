"""Who may use the operator API: one rule, in one place.

* LNbits super user / admins, by session cookie or bearer token: read and write.
* The admin key (X-Api-Key) of a wallet owned by such a user: read and write.
* The invoice key of such a wallet: read only.
* Anyone else (ordinary users' keys or tokens): 403. No credentials: 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from lnbits.core.crud import get_wallet_for_key
from lnbits.decorators import (
    _check_account_exists,
    check_access_token,
    check_user_extension_access,
)
from lnbits.settings import settings

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
        wallet = await get_wallet_for_key(key)
        if not wallet:
            raise HTTPException(HTTPStatus.UNAUTHORIZED, "Invalid API key.")
        if not settings.is_admin_user(wallet.user):
            raise HTTPException(
                HTTPStatus.FORBIDDEN, "Only the LNbits super user or admins."
            )
        await _ensure_enabled(wallet.user)
        is_admin_key = key == wallet.adminkey
        return Operator(
            wallet.user, "admin_key" if is_admin_key else "invoice_key", is_admin_key
        )
    if access_token:
        account = await _check_account_exists(request, access_token)
        if not settings.is_admin_user(account.id):
            raise HTTPException(
                HTTPStatus.FORBIDDEN, "Only the LNbits super user or admins."
            )
        await _ensure_enabled(account.id)
        return Operator(account.id, "token", True)
    raise HTTPException(HTTPStatus.UNAUTHORIZED, "Missing access token or API key.")


async def operator_write(
    operator: Annotated[Operator, Depends(operator_read)],
) -> Operator:
    if not operator.can_write:
        raise HTTPException(
            HTTPStatus.FORBIDDEN, "An invoice key may read; writing needs an admin key."
        )
    return operator


ReadAccess = Annotated[Operator, Depends(operator_read)]
WriteAccess = Annotated[Operator, Depends(operator_write)]
