"""Adversarial review: state read before a write and written after it (an
operator's request racing another request, the client extension or a
background pass), in-process on the real LNbits app (SQLite, and PostgreSQL
with SATMACHINE_TEST_DB=postgres).

Each race is forced deterministically: a read the endpoint makes is wrapped so
that the other writer lands between that read and the endpoint's write.
Invariants: a write never puts back a value another writer changed after it
was read (a lost update of a money figure, a deactivation or a daily limit);
a request whose view went stale answers 409 and changes nothing.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from api_helpers import after_first_read, bitspire_extra
from test_settlement_flow import _deactivate_all_clients, _setup

pytestmark = pytest.mark.asyncio(loop_scope="session")

S = "satoshimachine"


async def test_deposit_edit_during_confirmation_is_not_overwritten(env, monkeypatch):
    """Broke: the operator corrects a pending deposit from 100 to 50 GTQ while
    a confirmation of the same deposit (read at 100) is in flight. The
    confirmation's write checked only the status, so it put the 100 back and
    confirmed it: the client was credited (and paid) 100 GTQ for 50 in cash.
    Now the confirmation answers 409 and changes nothing; confirmed again, the
    deposit holds the corrected 50."""
    from satmachineadmin import crud, views_api

    await _deactivate_all_clients(env)
    source, _commission, payer, _clients = await _setup(env, [])
    _, wallet = await env.user_with_wallet("corrected deposit")
    response = await env.api(
        "POST", "/clients", json={"wallet_id": wallet.id, "username": "corrected"}
    )
    assert response.status_code == 201, response.text
    client = response.json()
    response = await env.api(
        "POST",
        "/deposits",
        json={"client_id": client["id"], "amount": "100", "currency": "GTQ"},
    )
    assert response.status_code == 201, response.text
    deposit_id = response.json()["id"]

    async def correction():
        edit = await env.api(
            "PUT", f"/deposits/{deposit_id}", json={"amount": "50", "notes": "typo"}
        )
        assert edit.status_code == 200, edit.text

    fired = after_first_read(monkeypatch, views_api, "get_deposit", correction)
    response = await env.api(
        "PUT", f"/deposits/{deposit_id}/status", json={"status": "confirmed"}
    )
    monkeypatch.undo()
    assert fired
    assert response.status_code == 409, response.text
    stored = await crud.get_deposit(deposit_id)
    assert stored and stored.status == "pending"
    assert stored.amount == Decimal("50") and stored.notes == "typo"

    response = await env.api(
        "PUT", f"/deposits/{deposit_id}/status", json={"status": "confirmed"}
    )
    assert response.status_code == 200, response.text
    assert Decimal(str(response.json()["amount"])) == 50

    # 100 GTQ of principal arrives: the client's 50 GTQ are paid, the rest is
    # an orphan (before the fix the client got all 10,000 sats).
    await env.fund(payer.id, 20_000)
    await env.pay(
        payer.id,
        source.id,
        11_000,
        extra=bitspire_extra(10_000, 1_000, txid="stale-dep"),
    )
    await env.settle()
    assert await env.balance(wallet.id) == 5_000


async def test_deposit_edits_racing_do_not_both_win(env, monkeypatch):
    """Two corrections of one pending deposit, both read at 100.37: the first
    (to 50.15) lands; the second (to 80.99), made against the 100.37 it read, is
    refused instead of silently replacing the first with an audit trail
    whose "before" is wrong."""
    from satmachineadmin import crud, views_api

    await _deactivate_all_clients(env)
    _, wallet = await env.user_with_wallet("two editors")
    response = await env.api(
        "POST", "/clients", json={"wallet_id": wallet.id, "username": "editors"}
    )
    client = response.json()
    response = await env.api(
        "POST",
        "/deposits",
        json={"client_id": client["id"], "amount": "100.37", "currency": "GTQ"},
    )
    deposit_id = response.json()["id"]

    async def first_editor():
        edit = await env.api("PUT", f"/deposits/{deposit_id}", json={"amount": "50.15"})
        assert edit.status_code == 200, edit.text

    after_first_read(monkeypatch, views_api, "get_deposit", first_editor)
    response = await env.api("PUT", f"/deposits/{deposit_id}", json={"amount": "80.99"})
    monkeypatch.undo()
    assert response.status_code == 409, response.text
    stored = await crud.get_deposit(deposit_id)
    assert stored and stored.amount == Decimal("50.15")
    # Made against the current figure, the same correction goes through.
    response = await env.api("PUT", f"/deposits/{deposit_id}", json={"amount": "80.99"})
    assert response.status_code == 200, response.text
    stored = await crud.get_deposit(deposit_id)
    assert stored and stored.amount == Decimal("80.99")


async def test_client_deactivated_during_an_edit_stays_inactive(env, monkeypatch):
    """Broke: the operator deactivates a client (e.g. to hand back its
    remaining cash) while another edit of the same client (a new wallet) is
    in flight. The edit wrote back the whole row it had read, status
    `active` included: the client was active again and the next settlement
    paid it. Now each request writes only the columns it changes."""
    from satmachineadmin import crud, views_api

    await _deactivate_all_clients(env)
    source, _commission, payer, clients = await _setup(env, ["50"])
    ((client, wallet),) = clients
    new_wallet = await env.wallet("new wallet", client["user_id"])

    async def deactivate():
        response = await env.api(
            "PUT", f"/clients/{client['id']}/status", json={"status": "inactive"}
        )
        assert response.status_code == 200, response.text

    fired = after_first_read(monkeypatch, views_api, "get_wallet", deactivate)
    response = await env.api(
        "PUT", f"/clients/{client['id']}", json={"wallet_id": new_wallet.id}
    )
    monkeypatch.undo()
    assert fired
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "inactive"
    stored = await crud.get_client(client["id"])
    assert stored and stored.status == "inactive"
    assert stored.wallet_id == new_wallet.id

    await env.fund(payer.id, 10_000)
    await env.pay(
        payer.id, source.id, 5_500, extra=bitspire_extra(5_000, 500, txid="stale-deact")
    )
    await env.settle()
    assert await env.balance(new_wallet.id) == 0
    assert await env.balance(wallet.id) == 0


async def test_review_keeps_a_limit_the_client_lowered_meanwhile(env, monkeypatch):
    """Broke: the client extension lowers a fixed-mode client's daily limit
    (its own table row) while the operator marks the row reviewed; the
    review wrote back the whole row and the old, higher limit returned."""
    from satmachineadmin import crud, views_api
    from satmachineadmin.crud import db

    await _deactivate_all_clients(env)
    _, wallet = await env.user_with_wallet("fixed client")
    response = await env.api(
        "POST",
        "/clients",
        json={
            "wallet_id": wallet.id,
            "username": "fixed",
            "dca_mode": "fixed",
            "fixed_mode_daily_limit": "500",
        },
    )
    assert response.status_code == 201, response.text
    client_id = response.json()["id"]

    async def client_lowers_limit():
        await db.execute(
            f"UPDATE {S}.dca_clients SET fixed_mode_daily_limit = 20, "
            "dca_mode = 'flow' WHERE id = :id",
            {"id": client_id},
        )

    after_first_read(monkeypatch, views_api, "get_client", client_lowers_limit)
    response = await env.api("PUT", f"/clients/{client_id}/reviewed")
    monkeypatch.undo()
    assert response.status_code == 200, response.text
    stored = await crud.get_client(client_id)
    assert stored and stored.reviewed_at
    assert stored.fixed_mode_daily_limit == Decimal("20")
    assert stored.dca_mode == "flow"
    assert Decimal(str(response.json()["fixed_mode_daily_limit"])) == 20


async def test_config_save_keeps_a_wallet_saved_meanwhile(env, monkeypatch):
    """Broke: two saves of the settings at once, one a new commission wallet
    (a partner leaving), the other an unrelated field: the second wrote back
    the whole row it had read and the old commission wallet returned (the
    next commission went to the partner who left). Now a save writes only the
    fields it sends."""
    from satmachineadmin import crud, views_api

    _source, old_commission, _payer, _clients = await _setup(env, [])
    config = await crud.get_config()
    assert config and config.commission_wallet_id == old_commission.id
    new_commission = await env.wallet("new commission")

    async def other_operator():
        response = await env.api(
            "PUT",
            f"/config/{config.id}",
            json={"commission_wallet_id": new_commission.id},
        )
        assert response.status_code == 200, response.text

    fired = after_first_read(monkeypatch, views_api, "get_config_by_id", other_operator)
    response = await env.api(
        "PUT", f"/config/{config.id}", json={"waiting_window_hours": 48}
    )
    monkeypatch.undo()
    assert fired
    assert response.status_code == 200, response.text
    assert response.json()["commission_wallet_id"] == new_commission.id
    stored = await crud.get_config()
    assert stored and stored.commission_wallet_id == new_commission.id
    assert stored.waiting_window_hours == 48


async def test_machine_save_keeps_a_source_wallet_saved_meanwhile(env, monkeypatch):
    """Broke: renaming a machine while another request moves its source
    wallet wrote the old source wallet back (payments arriving in the new
    one were then not recognised as this machine's)."""
    from satmachineadmin import machines, views_api_machines

    old_source = await env.wallet("machine source")
    new_source = await env.wallet("machine new source")
    response = await env.api(
        "POST",
        "/machines",
        json={"device_id": "stale-machine", "source_wallet_id": old_source.id},
    )
    assert response.status_code == 201, response.text
    machine_id = response.json()["id"]

    async def move_source():
        response = await env.api(
            "PUT",
            f"/machines/{machine_id}",
            json={"source_wallet_id": new_source.id},
        )
        assert response.status_code == 200, response.text

    after_first_read(monkeypatch, views_api_machines, "get_machine", move_source)
    response = await env.api("PUT", f"/machines/{machine_id}", json={"name": "Lobby"})
    monkeypatch.undo()
    assert response.status_code == 200, response.text
    assert response.json()["source_wallet_id"] == new_source.id
    stored = await machines.get_machine(machine_id)
    assert stored and stored.source_wallet_id == new_source.id
    assert stored.name == "Lobby" and stored.reviewed_at
