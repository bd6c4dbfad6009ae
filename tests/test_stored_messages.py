"""Texts the server stores for the operator (a settlement's status detail, a
payout's or an orphan's error, history details), in the reader's language
(issue 15): kept in English in their old columns, whatever the language of
the request that wrote them, and as a message beside them (m017) that the API
renders again in the language of each request. Rows written before m017 keep
showing their English."""

from __future__ import annotations

import pytest
from api_helpers import fresh_currency
from test_balances import _client_with_deleted_wallet, _settle
from test_rate_check import MARKET, _claim, _world
from test_settlement_flow import _deactivate_all_clients, _setup

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _spanish(env) -> dict:
    return {"headers": {**env.auth, "Accept-Language": "es-GT,es;q=0.9"}}


async def _both(env, path: str) -> tuple[dict, dict]:
    english = await env.api("GET", path)
    spanish = await env.api("GET", path, **_spanish(env))
    assert english.status_code == spanish.status_code == 200, english.text
    return english.json(), spanish.json()


async def test_a_flagged_settlement_in_spanish(env):
    currency, source, payer, _client = await _world(env)
    flagged = await _claim(
        env,
        source,
        payer,
        1_000,
        {
            "principal_sats": 1_000,
            "fee_sats": 0,
            "exchange_rate": "100000000",
            "currency": currency,
        },
        market=MARKET,
    )
    assert flagged["status"] == "flagged"
    english, spanish = await _both(env, f"/settlements/{flagged['id']}")
    # Without a language: the same English as before m017.
    assert english["status_detail"] == flagged["status_detail"]
    assert english["status_detail"] == (
        f"its price 100,000,000.00 {currency}/BTC is 9900.0% away from "
        "1,000,000.00 (LNbits' exchange rate); more than the 10.0% allowed: "
        "accept it or correct it"
    )
    assert spanish["status_detail"] == (
        f"su precio de 100,000,000.00 {currency}/BTC está a 9900.0% de "
        "1,000,000.00 (el tipo de cambio de LNbits); más del 10.0% permitido: "
        "acéptelo o corríjalo"
    )
    # The list renders it too.
    listed = await env.api(
        "GET",
        "/settlements",
        params={"search": flagged["payment_hash"]},
        **_spanish(env),
    )
    assert listed.json()["data"][0]["status_detail"] == spanish["status_detail"]

    # Dismissed from a Spanish request: stored in English, shown in Spanish;
    # the operator's reason is never translated.
    response = await env.api(
        "PUT",
        f"/settlements/{flagged['id']}/dismiss",
        json={"reason": "recarga de prueba"},
        **_spanish(env),
    )
    assert response.status_code == 200, response.text
    assert response.json()["status_detail"] == "descartada: recarga de prueba"
    english, spanish = await _both(env, f"/settlements/{flagged['id']}")
    assert english["status_detail"] == "dismissed: recarga de prueba"
    assert spanish["status_detail"] == "descartada: recarga de prueba"
    from satmachineadmin import crud

    stored = await crud.get_settlement(flagged["id"])
    assert stored and stored.status_detail == "dismissed: recarga de prueba"


async def test_a_failed_settlement_and_its_orphan_history_in_spanish(env):
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _c, payer, _clients = await _setup(env, ["50"], currency=cur)
    _, gone, leaver = await _client_with_deleted_wallet(env, cur)
    settlement = await _settle(env, source, payer, 10_000, 0, "1000000", cur, "es")
    assert settlement["status"] == "payout_failed"
    english, spanish = await _both(env, f"/settlements/{settlement['id']}")
    assert english["status_detail"] == "1 payout(s) failed; retry when fixed"
    assert spanish["status_detail"] == (
        "1 pago(s) fallido(s); reintente cuando esté corregido"
    )
    [failed_en] = [p for p in english["payouts"] if p["client_id"] == leaver["id"]]
    [failed_es] = [p for p in spanish["payouts"] if p["client_id"] == leaver["id"]]
    assert (failed_en["error"], failed_es["error"]) in (
        (f"wallet {gone.id} not found", f"no se encontró la billetera {gone.id}"),
        (f"wallet {gone.id} was deleted", f"la billetera {gone.id} fue eliminada"),
    )

    # The operator gives up on it (a Spanish request): its sats become an
    # orphan, resolved as the operator's funds.
    response = await env.api(
        "POST",
        f"/payouts/{failed_en['id']}/cancel",
        json={"reason": "billetera borrada"},
        **_spanish(env),
    )
    assert response.status_code == 200, response.text
    assert response.json()["error"] == "cancelado por el operador: billetera borrada"
    english, spanish = await _both(env, f"/settlements/{settlement['id']}")
    [cancelled] = [p for p in english["payouts"] if p["id"] == failed_en["id"]]
    assert cancelled["error"] == "cancelled by the operator: billetera borrada"
    orphan = english["reconciliation"]
    response = await env.api(
        "POST",
        f"/reconciliations/{orphan['id']}/resolve",
        json={"action": "operator_funds", "note": "efectivo nuestro"},
        **_spanish(env),
    )
    assert response.status_code == 200, response.text

    english, spanish = await _both(env, f"/reconciliations/{orphan['id']}/history")
    [entry_en] = english
    [entry_es] = spanish
    assert entry_en["action"] == entry_es["action"] == "resolve:operator_funds"
    assert entry_en["details"] == entry_es["details"]  # the JSON, as written
    assert entry_en["details_text"] == "note: efectivo nuestro"
    assert entry_es["details_text"] == "nota: efectivo nuestro"


async def test_rows_written_before_the_messages_keep_their_english(env):
    """A settlement, a payout and an orphan written before m017 have no
    message: every reader sees their English as it was."""
    from satmachineadmin.crud import db

    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _c, payer, _clients = await _setup(env, ["50"], currency=cur)
    await _client_with_deleted_wallet(env, cur)
    settlement = await _settle(env, source, payer, 10_000, 0, "1000000", cur, "old")
    assert settlement["status"] == "payout_failed"
    await db.execute(
        "UPDATE satoshimachine.settlements SET status_detail = :detail, "
        "status_detail_msg = NULL WHERE id = :id",
        {"detail": "2 payout(s) failed; retry when fixed", "id": settlement["id"]},
    )
    await db.execute(
        "UPDATE satoshimachine.dca_payments SET error = :error, error_msg = NULL "
        "WHERE settlement_id = :id AND status = 'failed'",
        {"error": "invoice failed: old text", "id": settlement["id"]},
    )
    english, spanish = await _both(env, f"/settlements/{settlement['id']}")
    for body in (english, spanish):
        assert body["status_detail"] == "2 payout(s) failed; retry when fixed"
        [failed] = [p for p in body["payouts"] if p["status"] == "failed"]
        assert failed["error"] == "invoice failed: old text"
    # Stored history written before: its details in words, values as written.
    from satmachineadmin.models import audit_details_text

    assert audit_details_text('{"reason": "old", "wallet_id": null}') == ("reason: old")
    assert audit_details_text("not json") == "not json"
    assert audit_details_text(None) is None
