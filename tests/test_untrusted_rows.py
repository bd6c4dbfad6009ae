"""Rows written by others are untrusted (issue 11, part 2).

The client extension lets any LNbits user insert their own `dca_clients` row
with any username, mode, status or limit. The operator must be able to tell
two `maria`s apart, see which rows they never reviewed, and see which clients
will never be paid because their mode or status is outside the vocabulary.
"""

from __future__ import annotations

import pytest
from api_helpers import register_client

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _insert_as_client_extension(
    wallet_id: str, user_id: str, username: str, mode: str, status: str
) -> str:
    """What the client extension does on registration: a direct INSERT, with
    no review and whatever strings it was given."""
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db

    client_id = urlsafe_short_hash()
    await db.execute(
        "INSERT INTO satoshimachine.dca_clients (id, user_id, wallet_id, username, "
        "dca_mode, fixed_mode_daily_limit, status, created_at, updated_at) VALUES "
        f"(:id, :user, :wallet, :name, :mode, NULL, :status, {db.timestamp_now}, "
        f"{db.timestamp_now})",
        {
            "id": client_id,
            "user": user_id,
            "wallet": wallet_id,
            "name": username,
            "mode": mode,
            "status": status,
        },
    )
    return client_id


async def test_clients_the_operator_never_reviewed_are_new(env):
    reviewed = await register_client(env, "maria")
    account, wallet = await env.user_with_wallet("maria")
    inserted = await _insert_as_client_extension(
        wallet.id, account.id, "maria", "flow", "active"
    )
    clients = {
        c["id"]: c
        for c in (
            await env.api("GET", "/clients", params={"search": "maria", "limit": 100})
        ).json()
    }
    assert clients[reviewed["id"]]["is_new"] is False
    assert clients[inserted]["is_new"] is True
    # The two are told apart by what the picker shows: wallet and user.
    assert clients[inserted]["wallet_id"] != clients[reviewed["id"]]["wallet_id"]
    assert clients[inserted]["user_id"] != clients[reviewed["id"]]["user_id"]

    response = await env.api("PUT", f"/clients/{inserted}/reviewed")
    assert response.status_code == 200, response.text
    again = (await env.api("GET", f"/clients/{inserted}")).json()
    assert again["is_new"] is False


@pytest.mark.parametrize(
    ("mode", "status", "reason"),
    [
        ("FLOW", "active", "unknown mode 'FLOW'"),
        ("weird", "active", "unknown mode 'weird'"),
        ("flow", "ACTIVE", "unknown status 'ACTIVE'"),
    ],
)
async def test_clients_outside_the_vocabulary_need_attention(env, mode, status, reason):
    account, wallet = await env.user_with_wallet("odd")
    client_id = await _insert_as_client_extension(
        wallet.id, account.id, "odd", mode, status
    )
    summary = (await env.api("GET", f"/clients/{client_id}")).json()
    assert summary["attention"] and reason in summary["attention"]
    assert "never paid" in summary["attention"]


async def test_known_vocabulary_needs_no_attention(env):
    client = await register_client(env)
    summary = (await env.api("GET", f"/clients/{client['id']}")).json()
    assert summary["attention"] is None
