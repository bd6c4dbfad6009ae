"""ATM cash-out metadata is a claim, not a fact (issue 11, part 1).

Anyone holding the source wallet's invoice key can create an invoice whose
`extra` claims a bitSpire cash-out and pay it. Each reproduction below used to
debit client balances (or leave the settlement retried forever); now every
number is validated strictly, bills/principal/rate must agree, and the price
must agree with an independent one (LNbits' rate, else recent settlements),
or the settlement is flagged and moves no money until the operator accepts or
corrects it.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from api_helpers import fresh_currency
from test_settlement_flow import _deactivate_all_clients, _setup

pytestmark = pytest.mark.asyncio(loop_scope="session")

MARKET = 1_000_000  # fiat per BTC: 100 sats per unit


async def _world(env, balance: str = "1000"):
    await _deactivate_all_clients(env)
    currency = fresh_currency()
    source, _c, payer, clients = await _setup(env, [balance], currency=currency)
    await env.fund(payer.id, 10_000_000)
    return currency, source, payer, clients[0]


async def _claim(env, source, payer, sats: int, extra: dict, market=None):
    if market is not None:
        env.market(extra.get("currency", "GTQ"), market)
    payment_hash = await env.pay(
        payer.id, source.id, sats, extra={"source": "bitspire", **extra}, market=False
    )
    await env.settle()
    response = await env.api("GET", "/settlements", params={"search": payment_hash})
    [row] = response.json()["data"]
    return (await env.api("GET", f"/settlements/{row['id']}")).json()


async def _balance(env, client_id: str) -> Decimal:
    body = (await env.api("GET", f"/clients/{client_id}/balance")).json()
    return Decimal(str(body["remaining_balance"]))


async def _untouched(env, settlement, client, wallet, balance="1000") -> None:
    assert settlement["status"] == "flagged", settlement
    assert settlement["payouts"] == []
    assert await env.balance(wallet.id) == 0
    assert await _balance(env, client["id"]) == Decimal(balance)


async def test_a_price_far_from_the_market_is_flagged(env):
    currency, source, payer, (client, wallet) = await _world(env)
    # 100,000,000 per BTC, no bills: 1000.00 for 1,000 sats.
    settlement = await _claim(
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
    await _untouched(env, settlement, client, wallet)
    assert "% away from" in settlement["status_detail"]
    assert "LNbits' exchange rate" in settlement["status_detail"]
    # Recovery never distributes it by itself.
    await env.api("POST", "/manual-poll")
    again = (await env.api("GET", f"/settlements/{settlement['id']}")).json()
    await _untouched(env, again, client, wallet)


async def test_bills_that_disagree_with_the_principal_are_flagged(env):
    currency, source, payer, (client, wallet) = await _world(env, "100")
    # Bills worth 500.00, principal worth 9.00 at the reported rate.
    settlement = await _claim(
        env,
        source,
        payer,
        1_000,
        {
            "principal_sats": 900,
            "fee_sats": 100,
            "exchange_rate": str(MARKET),
            "currency": currency,
            "bills": [{"denomination": 100, "count": 5}],
        },
        market=MARKET,
    )
    await _untouched(env, settlement, client, wallet, "100")
    assert "does not match" in settlement["status_detail"]


@pytest.mark.parametrize(
    "bad",
    [
        {"principal_sats": True, "fee_sats": 999},
        {"exchange_rate": 1e300},
        {"exchange_rate": "1E+999999999"},
        {"exchange_rate": "NaN"},
        {"exchange_rate": True},
        {"bills": {"1e400": 1}},
        {"bills": [{"denomination": 100, "count": True}]},
        {"bills": "lots"},
        {"principal_sats": 999.0, "fee_sats": 1},
    ],
)
async def test_strange_numbers_are_flagged_once_not_retried(env, bad):
    currency, source, payer, (client, wallet) = await _world(env)
    extra = {
        "principal_sats": 999,
        "fee_sats": 1,
        "exchange_rate": str(MARKET),
        "currency": currency,
        **bad,
    }
    settlement = await _claim(env, source, payer, 1_000, extra, market=MARKET)
    await _untouched(env, settlement, client, wallet)
    assert "bitSpire metadata" in settlement["status_detail"]
    attempts = settlement["lookup_attempts"]
    await env.api("POST", "/manual-poll")
    again = (await env.api("GET", f"/settlements/{settlement['id']}")).json()
    assert again["status"] == "flagged"
    assert again["lookup_attempts"] == attempts  # flagged: never looked up again


async def test_a_price_nothing_confirms_is_flagged_then_accepted(env):
    currency, source, payer, (client, wallet) = await _world(env)
    env.market(currency, 0)  # LNbits has no rate for it; no settlement yet
    extra = {
        "principal_sats": 10_000,
        "fee_sats": 500,
        "exchange_rate": str(MARKET),
        "currency": currency,
    }
    settlement = await _claim(env, source, payer, 10_500, extra)
    await _untouched(env, settlement, client, wallet)
    assert "cannot be checked" in settlement["status_detail"]

    response = await env.api(
        "POST",
        f"/settlements/{settlement['id']}/accept",
        json={"reason": "checked the machine's log"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    assert await env.balance(wallet.id) == 10_000
    assert await _balance(env, client["id"]) == Decimal("900.00")
    again = await env.api(
        "POST", f"/settlements/{settlement['id']}/accept", json={"reason": "again"}
    )
    assert again.status_code == 409

    # The accepted settlement is now the reference: a later honest one passes,
    # a later wild one is flagged, with LNbits still silent.
    honest = await _claim(env, source, payer, 10_500, {**extra, "txid": "2"})
    assert honest["status"] == "completed", honest["status_detail"]
    wild = await _claim(
        env,
        source,
        payer,
        1_000,
        {
            **extra,
            "principal_sats": 1_000,
            "fee_sats": 0,
            "exchange_rate": "5000000",
            "txid": "3",
        },
    )
    assert wild["status"] == "flagged"
    assert "median of the last" in wild["status_detail"]


async def test_typed_cash_out_data_is_checked_too(env):
    currency, source, payer, (_client, wallet) = await _world(env)
    env.market(currency, MARKET)
    payment_hash = await env.pay(payer.id, source.id, 1_000, market=False)
    await env.settle()
    response = await env.api("GET", "/settlements", params={"search": payment_hash})
    [row] = response.json()["data"]
    assert row["status"] == "waiting_data"
    response = await env.api(
        "PUT",
        f"/settlements/{row['id']}/cash-out",
        json={"fiat_amount": "1000", "fiat_code": currency, "principal_sats": 1_000},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "flagged"
    assert await env.balance(wallet.id) == 0
    response = await env.api(
        "PUT",
        f"/settlements/{row['id']}/cash-out",
        json={"fiat_amount": "10", "fiat_code": currency, "principal_sats": 1_000},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    assert await env.balance(wallet.id) == 1_000
