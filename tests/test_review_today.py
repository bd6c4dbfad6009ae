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
from api_helpers import after_first_read
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


async def test_two_schedule_saves_never_store_daily_without_a_time(env, monkeypatch):
    """Broke: the schedule is checked on the row as read (merged with the
    fields sent), and since saves write only their fields, two saves each
    valid on its own combined into an invalid one: one sets "daily" (the
    time it read, 08:00, makes it valid), the other clears the time (valid
    for "on settlement", which it read). Stored: daily with no time, which
    has no delivery slot at all: fixed-mode payouts waited forever. Now the
    save whose check read a schedule field changed since answers 409."""
    from satmachineadmin import crud, views_api

    await _setup(env, [])
    config = await crud.get_config()
    assert config
    response = await env.api(
        "PUT",
        f"/config/{config.id}",
        json={"fixed_delivery": "on_settlement", "fixed_delivery_time": "08:00"},
    )
    assert response.status_code == 200, response.text

    async def other_operator():
        response = await env.api(
            "PUT", f"/config/{config.id}", json={"fixed_delivery_time": None}
        )
        assert response.status_code == 200, response.text

    fired = after_first_read(monkeypatch, views_api, "get_config_by_id", other_operator)
    response = await env.api(
        "PUT", f"/config/{config.id}", json={"fixed_delivery": "daily"}
    )
    monkeypatch.undo()
    assert fired
    assert response.status_code == 409, response.text
    stored = await crud.get_config_by_id(config.id)
    assert stored
    assert stored.fixed_delivery == "on_settlement"
    assert stored.fixed_delivery_time is None
    # Made against the current schedule, the same save is refused as invalid
    # (400), and sent whole it goes through.
    response = await env.api(
        "PUT", f"/config/{config.id}", json={"fixed_delivery": "daily"}
    )
    assert response.status_code == 400, response.text
    response = await env.api(
        "PUT",
        f"/config/{config.id}",
        json={"fixed_delivery": "daily", "fixed_delivery_time": "09:30"},
    )
    assert response.status_code == 200, response.text
    response = await env.api(
        "PUT",
        f"/config/{config.id}",
        json={"fixed_delivery": "on_settlement", "fixed_delivery_time": None},
    )
    assert response.status_code == 200, response.text
