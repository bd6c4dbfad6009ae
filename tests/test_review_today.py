"""Review of the compare-and-set writes merged in session 8: values go to the
database exactly as sent, and a guard compares against the row exactly as it
was read.

LNbits' `Connection.execute` (and so `db.execute`, `_execute_rowcount`)
strips what looks like HTML from every string parameter (`<...>`, `&name;`);
its `db.insert`/`db.update` do not. Rows created by `db.insert` keep such
text, so a guard comparing a read column through `db.execute` never matched,
and fields saved through `compare_and_set` lost characters a whole-row
`db.update` used to keep."""

from __future__ import annotations

import pytest
from test_settlement_flow import _deactivate_all_clients, _setup

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_deposit_with_angle_brackets_in_its_notes_can_be_confirmed(env):
    """Broke: a deposit noted "recibo <A-17>" (stored as sent) was refused with
    409 "changed meanwhile" on every confirmation and every edit: the guard
    compared the stored notes with the read ones stripped to "recibo "."""
    from satmachineadmin import crud

    await _deactivate_all_clients(env)
    _, wallet = await env.user_with_wallet("noted deposit")
    response = await env.api(
        "POST", "/clients", json={"wallet_id": wallet.id, "username": "noted"}
    )
    assert response.status_code == 201, response.text
    client = response.json()
    notes = "recibo <A-17> &amp; sobre"
    response = await env.api(
        "POST",
        "/deposits",
        json={
            "client_id": client["id"],
            "amount": "100",
            "currency": "GTQ",
            "notes": notes,
        },
    )
    assert response.status_code == 201, response.text
    deposit_id = response.json()["id"]
    stored = await crud.get_deposit(deposit_id)
    assert stored and stored.notes == notes

    response = await env.api("PUT", f"/deposits/{deposit_id}", json={"amount": "90"})
    assert response.status_code == 200, response.text
    response = await env.api(
        "PUT", f"/deposits/{deposit_id}/status", json={"status": "confirmed"}
    )
    assert response.status_code == 200, response.text
    stored = await crud.get_deposit(deposit_id)
    assert stored and stored.status == "confirmed" and stored.notes == notes


async def test_config_save_keeps_a_password_as_typed(env):
    """Broke: a Lamassu password such as "k<9>x&amp;z" saved from the
    settings was stored as "kx" (the create kept it whole; the save, now a
    compare-and-set through db.execute, stripped it): the next poll could not
    log in."""
    from satmachineadmin import crud

    await _setup(env, [])
    config = await crud.get_config()
    assert config
    password = "k<9>x&amp;z"
    response = await env.api("PUT", f"/config/{config.id}", json={"password": password})
    assert response.status_code == 200, response.text
    stored = await crud.get_config_by_id(config.id)
    assert stored and stored.password == password
    response = await env.api("PUT", f"/config/{config.id}", json={"password": ""})
    assert response.status_code == 200, response.text
