"""Which machine a settlement belongs to decides whose commission partners
are paid. The wallet the money arrived in is a fact; the machine the ATM's
metadata (bitSpire `machine_npub`, a Lamassu row's device id) names is a
claim. A payment into a wallet only machine B uses whose metadata names
another machine is flagged for the operator instead of silently paying either
machine's partners; accepting it credits the wallet's machine, entering the
data by hand with a device id credits the machine the operator typed. The
configured (shared) source wallet keeps trusting the data."""

from __future__ import annotations

import pytest
from api_helpers import fresh_currency
from test_machines import _conserved, _extra, _settlement
from test_settlement_flow import _deactivate_all_clients

pytestmark = pytest.mark.asyncio(loop_scope="session")

ES = {"Accept-Language": "es-GT,es;q=0.9"}


async def _two_machines(env, cur: str) -> dict:
    """Machine B pays into a wallet of its own, machine C into the main one;
    each has its own commission partner, and there is a global partner."""
    main = await env.wallet("main source")
    b_wallet = await env.wallet("B's own source")
    payer = await env.wallet("atm customer")
    await env.fund(payer.id, 100_000)
    partner = {n: await env.wallet(f"{n} partner") for n in ("global", "B", "C")}
    response = await env.api(
        "POST",
        "/config",
        json={
            "source_wallet_id": main.id,
            "commission_wallet_id": partner["global"].id,
        },
    )
    assert response.status_code == 201, response.text
    machines = {}
    for name, wallet in (("B", b_wallet), ("C", main)):
        response = await env.api(
            "POST",
            "/machines",
            json={
                "device_id": f"npub1{name.lower()}{cur}",
                "name": f"Machine {name}",
                "source_wallet_id": wallet.id,
            },
        )
        assert response.status_code == 201, response.text
        machines[name] = response.json()
        response = await env.api(
            "PUT",
            f"/machines/{machines[name]['id']}/commission-recipients",
            json={"recipients": [{"wallet_id": partner[name].id, "percent": "100"}]},
        )
        assert response.status_code == 200, response.text
    return {
        "main": main,
        "b_wallet": b_wallet,
        "payer": payer,
        "partner": partner,
        "machines": machines,
    }


async def _balances(env, setup) -> dict:
    return {n: await env.balance(w.id) for n, w in setup["partner"].items()}


async def _cleanup(env, setup) -> None:
    # Later tests pay into the main wallet: B's own wallet stays B's, harmless.
    for machine in setup["machines"].values():
        await env.api(
            "PUT",
            f"/machines/{machine['id']}/commission-recipients",
            json={"recipients": []},
        )


@pytest.mark.parametrize("named", ["C", "unknown"])
async def test_metadata_naming_another_machine_in_a_machines_own_wallet_is_flagged(
    env, named
):
    """The review's case: the payment arrives in B's own source wallet and its
    bitSpire metadata names C (or a device nobody listed). Before the fix the
    settlement was split at once for C (or the global partners): C's partner
    got the commission of a payment B's wallet received."""
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    setup = await _two_machines(env, cur)
    b_device = setup["machines"]["B"]["device_id"]
    claimed = setup["machines"]["C"]["device_id"] if named == "C" else f"npub1x{cur}"
    before = await _balances(env, setup)
    payment_hash = await env.pay(
        setup["payer"].id,
        setup["b_wallet"].id,
        10_000,
        extra=_extra(cur, 9_000, 1_000, f"trust-{named}", claimed),
    )
    await env.settle()
    detail = await _settlement(env, payment_hash)
    # Neither machine's partners are paid while the operator has not decided.
    assert detail["status"] == "flagged", (detail["status"], detail["status_detail"])
    assert detail["commission_payouts"] == [] and detail["payouts"] == []
    assert await _balances(env, setup) == before
    assert await env.balance(setup["b_wallet"].id) == 10_000
    # The fact stays the settlement's machine until the operator says otherwise.
    assert detail["device_id"] == b_device
    text = detail["status_detail"]
    assert b_device in text and claimed in text and "Machine B" in text, text
    if named == "C":
        assert "Machine C" in text, text
    spanish = (
        await env.api("GET", f"/settlements/{detail['id']}", headers={**env.auth, **ES})
    ).json()["status_detail"]
    assert b_device in spanish and claimed in spanish, spanish
    assert "billetera" in spanish and spanish != text, spanish
    # The unknown device is not listed as a new machine on the claim alone.
    machines = {m["device_id"] for m in (await env.api("GET", "/machines")).json()}
    assert (claimed in machines) == (named == "C")

    # Accepting trusts the wallet: B's partner is paid, no one else.
    response = await env.api(
        "POST",
        f"/settlements/{detail['id']}/accept",
        json={"reason": "the wallet is B's"},
    )
    assert response.status_code == 200, response.text
    await env.settle()
    detail = await _settlement(env, payment_hash)
    assert detail["status"] == "completed", detail["status_detail"]
    assert detail["device_id"] == b_device
    _conserved(detail)
    assert [
        (p["wallet_id"], p["amount_sats"]) for p in detail["commission_payouts"]
    ] == [(setup["partner"]["B"].id, 1_000)]
    after = await _balances(env, setup)
    assert {n: after[n] - before[n] for n in after} == {"global": 0, "B": 1_000, "C": 0}
    await _cleanup(env, setup)


async def test_the_operator_may_name_the_other_machine_by_hand(env):
    """Entering the cash-out data by hand with C's device id is the operator's
    decision: C's partner is paid, and the settlement adds up to the sat."""
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    setup = await _two_machines(env, cur)
    c_device = setup["machines"]["C"]["device_id"]
    before = await _balances(env, setup)
    payment_hash = await env.pay(
        setup["payer"].id,
        setup["b_wallet"].id,
        10_000,
        extra=_extra(cur, 9_000, 1_000, "trust-hand", c_device),
    )
    await env.settle()
    detail = await _settlement(env, payment_hash)
    assert detail["status"] == "flagged", detail["status_detail"]
    env.market(cur, 1_000_000)
    response = await env.api(
        "PUT",
        f"/settlements/{detail['id']}/cash-out",
        json={
            "fiat_amount": "90",
            "fiat_code": cur,
            "principal_sats": 9_000,
            "device_id": c_device,
            "note": "C's payment, sent to B's wallet by mistake",
        },
    )
    assert response.status_code == 200, response.text
    await env.settle()
    detail = await _settlement(env, payment_hash)
    assert detail["status"] == "completed", detail["status_detail"]
    assert detail["device_id"] == c_device
    _conserved(detail)
    after = await _balances(env, setup)
    assert {n: after[n] - before[n] for n in after} == {"global": 0, "B": 0, "C": 1_000}
    await _cleanup(env, setup)


async def test_the_wallets_own_machine_and_the_main_wallet_are_trusted(env):
    """No flag when the data names the wallet's own machine, and the main
    (shared) source wallet keeps letting the data name the machine."""
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    setup = await _two_machines(env, cur)
    b_device = setup["machines"]["B"]["device_id"]
    before = await _balances(env, setup)
    own = await env.pay(
        setup["payer"].id,
        setup["b_wallet"].id,
        10_000,
        extra=_extra(cur, 9_000, 1_000, "trust-own", f"  {b_device}\n"),
    )
    await env.settle()
    shared = await env.pay(
        setup["payer"].id,
        setup["main"].id,
        20_000,
        extra=_extra(cur, 18_000, 2_000, "trust-main", b_device),
    )
    await env.settle()
    one, two = await _settlement(env, own), await _settlement(env, shared)
    for detail in (one, two):
        assert detail["status"] == "completed", detail["status_detail"]
        assert detail["device_id"] == b_device
        _conserved(detail)
    after = await _balances(env, setup)
    assert {n: after[n] - before[n] for n in after} == {"global": 0, "B": 3_000, "C": 0}
    await _cleanup(env, setup)


async def test_a_price_flag_and_a_machine_flag_are_both_shown(env):
    """A claimed machine flag must not hide a price nobody confirms (accepting
    skips the price check), nor the price flag hide the machine."""
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    setup = await _two_machines(env, cur)
    b_device = setup["machines"]["B"]["device_id"]
    c_device = setup["machines"]["C"]["device_id"]
    env.market(cur, 2_000_000)  # the ATM's 1,000,000 is half the market
    payment_hash = await env.pay(
        setup["payer"].id,
        setup["b_wallet"].id,
        10_000,
        extra=_extra(cur, 9_000, 1_000, "trust-price", c_device),
        market=False,
    )
    await env.settle()
    detail = await _settlement(env, payment_hash)
    assert detail["status"] == "flagged", detail["status_detail"]
    assert detail["device_id"] == b_device
    text = detail["status_detail"]
    assert c_device in text and "price" in text, text
    spanish = (
        await env.api("GET", f"/settlements/{detail['id']}", headers={**env.auth, **ES})
    ).json()["status_detail"]
    assert c_device in spanish and "precio" in spanish, spanish
    await _cleanup(env, setup)


# ------------------------------------------- LNbits' shares of a source wallet


async def test_a_share_of_a_source_wallet_is_refused_on_every_form(env):
    """LNbits 1.6 shared wallets: a share's invoices are created on the shared
    wallet itself. The client form refused a share of a source wallet; the
    commission partners, the configured commission wallet and a new source
    wallet (config or machine) shared with a client or partner did not: the
    commission (or payout) would be the source paying itself. Refused up
    front (400), nothing changes."""
    from test_review_money_paths import _share_of

    config = (await env.api("GET", "/config")).json()
    source = await env.wallet("trusted source")
    operator = await env.wallet("operator commission")
    response = await env.api(
        "POST",
        "/config",
        json={"source_wallet_id": source.id, "commission_wallet_id": operator.id},
    )
    assert response.status_code == 201, response.text
    account, _ = await env.user_with_wallet("sharee")
    share = await _share_of(env, source, account.id)

    # A partner (global or a machine's) on a share of the source wallet.
    response = await env.api(
        "PUT",
        "/commission-recipients",
        json={"recipients": [{"wallet_id": share.id, "percent": "100"}]},
    )
    assert response.status_code == 400, response.text
    assert source.id in response.json()["detail"]
    spanish = await env.api(
        "PUT",
        "/commission-recipients",
        json={"recipients": [{"wallet_id": share.id, "percent": "100"}]},
        headers={**env.auth, **ES},
    )
    assert "compartida" in spanish.json()["detail"], spanish.text
    assert (await env.api("GET", "/commission-recipients")).json()[0]["wallet_id"] == (
        operator.id
    )
    # The configured commission wallet on a share of the source wallet.
    response = await env.api(
        "POST",
        "/config",
        json={"source_wallet_id": source.id, "commission_wallet_id": share.id},
    )
    assert response.status_code == 400, response.text
    assert (await env.api("GET", "/config")).json()["commission_wallet_id"] == (
        operator.id
    )

    # A new source wallet shared with a client's wallet or a partner's.
    for holder in ("client", "partner"):
        new_source = await env.wallet(f"new source for {holder}")
        account, _ = await env.user_with_wallet(f"{holder} sharee")
        held = await _share_of(env, new_source, account.id)
        if holder == "client":
            response = await env.api(
                "POST", "/clients", json={"wallet_id": held.id, "username": "held"}
            )
            assert response.status_code == 201, response.text
        else:
            response = await env.api(
                "PUT",
                "/commission-recipients",
                json={"recipients": [{"wallet_id": held.id, "percent": "100"}]},
            )
            assert response.status_code == 200, response.text
        response = await env.api(
            "POST", "/config", json={"source_wallet_id": new_source.id}
        )
        assert response.status_code == 400, response.text
        assert held.id in response.json()["detail"]
        assert (await env.api("GET", "/config")).json()["source_wallet_id"] == (
            source.id
        )
        response = await env.api(
            "POST",
            "/machines",
            json={"device_id": f"npub1held{holder}", "source_wallet_id": new_source.id},
        )
        assert response.status_code == 400, response.text
        assert held.id in response.json()["detail"]
        machines = (await env.api("GET", "/machines")).json()
        assert f"npub1held{holder}" not in {m["device_id"] for m in machines}
    await env.api("PUT", "/commission-recipients", json={"recipients": []})
    if config:
        restore = {
            k: config[k]
            for k in ("source_wallet_id", "commission_wallet_id")
            if config.get(k)
        }
        await env.api("POST", "/config", json=restore)
