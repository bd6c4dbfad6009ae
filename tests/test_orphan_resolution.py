"""Orphan resolution as a state machine: nothing is paid twice, nothing goes to
an abandoned target, nothing reopens a resolved orphan (issue 10, part 1).

Each test reproduces a defect found against the earlier code:
* a failed send to W1 followed by a send to W2 paid W1 (its stored invoice was
  reused after the target changed);
* two overlapping recovery passes (or the API and a pass) attributed one orphan
  twice: two deposits of money nobody deposited;
* a stale send run wrote `open` over a resolved orphan, which the operator then
  resolved again: the orphan's sats left the source wallet twice.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from api_helpers import make_orphan, register_client

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _source_wallet_id(env) -> str:
    config = (await env.api("GET", "/config")).json()
    return config["source_wallet_id"]


async def _drain(env, wallet_id: str) -> tuple[str, int]:
    """Move a wallet's whole balance out (a real payment); returns where."""
    sink = await env.wallet("sink")
    sats = await env.balance(wallet_id)
    await env.pay(wallet_id, sink.id, sats, memo="drain")
    return sink.id, sats


async def _resolve(env, rec_id: str, body: dict):
    return await env.api("POST", f"/reconciliations/{rec_id}/resolve", json=body)


async def _orphan_deposits(env, client_id: str) -> list[dict]:
    response = await env.api(
        "GET", "/deposits", params={"client_id": client_id, "limit": 1000}
    )
    body = response.json()
    rows = body["data"] if isinstance(body, dict) else body
    return [d for d in rows if (d.get("notes") or "").startswith("orphan funds")]


async def test_failed_transfer_then_new_target_never_pays_the_old_one(env):
    _, rec = await make_orphan(env)
    source_id = await _source_wallet_id(env)
    sats = rec["orphan_sats"]
    w1 = await env.wallet("first target")
    w2 = await env.wallet("second target")

    _, drained = await _drain(env, source_id)
    response = await _resolve(
        env, rec["id"], {"action": "send_to_wallet", "wallet_id": w1.id}
    )
    assert response.status_code == 409, response.text
    reopened = (await env.api("GET", f"/reconciliations/{rec['id']}")).json()
    assert reopened["status"] == "open" and reopened["error"]

    await env.fund(source_id, drained)  # the operator tops the wallet up
    response = await _resolve(
        env, rec["id"], {"action": "send_to_wallet", "wallet_id": w2.id}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "resolved"
    assert await env.balance(w1.id) == 0
    assert await env.balance(w2.id) == sats

    # Nothing the first attempt created can still be paid: a recovery pass
    # and a retry by hand move nothing more.
    from satmachineadmin.orphan_resolution import resume_resolutions

    await resume_resolutions()
    assert await env.balance(w1.id) == 0
    assert await env.balance(w2.id) == sats
    assert await env.balance(source_id) == drained - sats


@pytest.mark.parametrize(
    "action", ["operator_funds", "send_to_wallet", "attribute_to_client"]
)
async def test_api_and_two_recovery_passes_resolve_once(env, action):
    from satmachineadmin.orphan_resolution import resume_resolutions

    _, rec = await make_orphan(env)
    source_id = await _source_wallet_id(env)
    sats, fiat = rec["orphan_sats"], Decimal(str(rec["orphan_fiat"]))
    target = await env.wallet("target")
    client = await register_client(env)
    body: dict = {"action": action}
    if action == "send_to_wallet":
        body["wallet_id"] = target.id
    if action == "attribute_to_client":
        body["client_id"] = client["id"]
    source_before = await env.balance(source_id)

    results = await asyncio.gather(
        _resolve(env, rec["id"], body),
        resume_resolutions(),
        resume_resolutions(),
        _resolve(env, rec["id"], body),
        resume_resolutions(),
    )
    codes = sorted(r.status_code for r in results if hasattr(r, "status_code"))
    assert codes == [200, 409], codes
    await resume_resolutions()
    await resume_resolutions()

    final = (await env.api("GET", f"/reconciliations/{rec['id']}")).json()
    assert final["status"] == "resolved"
    moved = source_before - await env.balance(source_id)
    if action == "operator_funds":
        assert moved == 0
    elif action == "send_to_wallet":
        assert moved == sats and await env.balance(target.id) == sats
    else:
        assert moved == sats
        assert await env.balance(client["wallet_id"]) == sats
        deposits = await _orphan_deposits(env, client["id"])
        assert len(deposits) == 1, deposits
        assert Decimal(str(deposits[0]["amount"])) == fiat
        balance = (await env.api("GET", f"/clients/{client['id']}/balance")).json()
        assert Decimal(str(balance["remaining_balance"])) == 0


async def test_recovery_passes_never_attribute_a_claimed_orphan_twice(env):
    """The crash case: an attribution claimed (resolving) but not carried out,
    then several recovery passes and the operator's manual poll at once."""
    from satmachineadmin.crud import compare_and_set
    from satmachineadmin.orphan_resolution import resume_resolutions

    _, rec = await make_orphan(env)
    client = await register_client(env)
    assert await compare_and_set(
        "reconciliations",
        rec["id"],
        {"status": "open"},
        {
            "status": "resolving",
            "resolution": "attribute_to_client",
            "target_client_id": client["id"],
            "target_wallet_id": client["wallet_id"],
        },
    )
    await asyncio.gather(
        resume_resolutions(),
        resume_resolutions(),
        env.api("POST", "/manual-poll"),
        resume_resolutions(),
    )
    assert len(await _orphan_deposits(env, client["id"])) == 1
    assert await env.balance(client["wallet_id"]) == rec["orphan_sats"]
    final = (await env.api("GET", f"/reconciliations/{rec['id']}")).json()
    assert final["status"] == "resolved"


async def test_stale_send_run_never_reopens_a_resolved_orphan(env):
    from satmachineadmin import crud
    from satmachineadmin.locks import money_lock
    from satmachineadmin.orphan_resolution import _send

    _, rec = await make_orphan(env)
    source_id = await _source_wallet_id(env)
    sats = rec["orphan_sats"]
    target = await env.wallet("target")
    stale_source = await env.wallet("stale")
    assert await crud.compare_and_set(
        "reconciliations",
        rec["id"],
        {"status": "open"},
        {
            "status": "resolving",
            "resolution": "send_to_wallet",
            "target_wallet_id": target.id,
        },
    )
    stale = await crud.get_reconciliation(rec["id"])
    settlement = await crud.get_settlement(rec["settlement_id"])
    assert stale and settlement
    from satmachineadmin.orphan_resolution import resume_resolutions

    await resume_resolutions()  # the real run: resolved
    assert (await crud.get_reconciliation(rec["id"])).status == "resolved"
    source_after = await env.balance(source_id)

    # A run that read the row before it was resolved, now carried out, to the
    # same target and to another one.
    async with money_lock():
        await _send(stale, settlement)
        stale.target_wallet_id = stale_source.id
        await _send(stale, settlement)
    current = await crud.get_reconciliation(rec["id"])
    assert current and current.status == "resolved"
    again = await _resolve(
        env, rec["id"], {"action": "send_to_wallet", "wallet_id": target.id}
    )
    assert again.status_code == 409
    assert await env.balance(target.id) == sats
    assert await env.balance(stale_source.id) == 0
    assert await env.balance(source_id) == source_after


async def test_attribution_refused_for_an_inactive_client(env):
    _, rec = await make_orphan(env)
    client = await register_client(env)
    response = await env.api(
        "PUT", f"/clients/{client['id']}/status", json={"status": "inactive"}
    )
    assert response.status_code == 200, response.text
    response = await _resolve(
        env, rec["id"], {"action": "attribute_to_client", "client_id": client["id"]}
    )
    assert response.status_code == 400, response.text
    assert "inactive" in response.json()["detail"]
    assert (await env.api("GET", f"/reconciliations/{rec['id']}")).json()[
        "status"
    ] == "open"
    assert await _orphan_deposits(env, client["id"]) == []


async def test_sending_to_the_source_wallet_itself_is_refused(env):
    _, rec = await make_orphan(env)
    source_id = await _source_wallet_id(env)
    response = await _resolve(
        env, rec["id"], {"action": "send_to_wallet", "wallet_id": source_id}
    )
    assert response.status_code == 400, response.text
    assert (await env.api("GET", f"/reconciliations/{rec['id']}")).json()[
        "status"
    ] == "open"


async def test_unpaid_attribution_to_a_deleted_wallet_is_abandoned_once(env):
    """C2 (found by the simulation): the attribution is recorded while the
    source wallet is empty, so its payout fails; then the client deletes the
    wallet. Cancelling that payout used to be refused (409) and the orphan
    stayed `resolving` forever. Now it cancels the payout and the deposit and
    opens the orphan again, in one step: the client's balance is what it was,
    nothing moved, and the orphan can be decided again."""
    from lnbits.core.crud import delete_wallet
    from satmachineadmin.orphan_resolution import resume_resolutions

    _, rec = await make_orphan(env)
    source_id = await _source_wallet_id(env)
    account, wallet = await env.user_with_wallet("attributed-leaver")
    response = await env.api(
        "POST", "/clients", json={"wallet_id": wallet.id, "username": "attr-leaver"}
    )
    client = response.json()
    balance_before = (await env.api("GET", f"/clients/{client['id']}/balance")).json()

    _, drained = await _drain(env, source_id)
    response = await _resolve(
        env, rec["id"], {"action": "attribute_to_client", "client_id": client["id"]}
    )
    assert response.status_code == 409, response.text
    claimed = (await env.api("GET", f"/reconciliations/{rec['id']}")).json()
    assert claimed["status"] == "resolving" and claimed["payout_id"]
    payout_id = claimed["payout_id"]
    await delete_wallet(user_id=account.id, wallet_id=wallet.id)
    await env.fund(source_id, drained)
    await resume_resolutions()  # "wallet ... was deleted": still resolving
    assert (await env.api("GET", f"/reconciliations/{rec['id']}")).json()[
        "status"
    ] == "resolving"

    body = {"reason": "the client deleted their wallet"}
    results = await asyncio.gather(
        env.api("POST", f"/payouts/{payout_id}/cancel", json=body),
        resume_resolutions(),
        env.api("POST", f"/payouts/{payout_id}/cancel", json=body),
    )
    codes = sorted(r.status_code for r in results if hasattr(r, "status_code"))
    assert codes == [200, 409], [getattr(r, "text", r) for r in results]

    reopened = (await env.api("GET", f"/reconciliations/{rec['id']}")).json()
    assert reopened["status"] == "open", reopened
    assert reopened["deposit_id"] is None and reopened["payout_id"] is None
    assert "abandoned" in reopened["error"]
    assert reopened["orphan_sats"] == rec["orphan_sats"]
    deposits = await _orphan_deposits(env, client["id"])
    assert [d["status"] for d in deposits] == ["cancelled"]
    balance = (await env.api("GET", f"/clients/{client['id']}/balance")).json()
    assert balance == balance_before
    assert await env.balance(source_id) == drained

    # Decided again, once; the abandoned payout is never paid by a later pass.
    response = await _resolve(env, rec["id"], {"action": "operator_funds"})
    assert response.status_code == 200, response.text
    await resume_resolutions()
    assert await env.balance(source_id) == drained
    again = await env.api("POST", f"/payouts/{payout_id}/cancel", json=body)
    assert again.status_code == 409


async def test_an_orphan_is_never_sent_to_a_deleted_wallet(env):
    """A deleted wallet still answers LNbits' get_wallet: sending an orphan to
    it would park the sats where nobody can spend them. 400, nothing moves,
    the orphan stays open for another decision."""
    from lnbits.core.crud import delete_wallet

    _, rec = await make_orphan(env)
    source_id = await _source_wallet_id(env)
    before = await env.balance(source_id)
    account, wallet = await env.user_with_wallet("gone")
    await delete_wallet(user_id=account.id, wallet_id=wallet.id)
    response = await _resolve(
        env, rec["id"], {"action": "send_to_wallet", "wallet_id": wallet.id}
    )
    assert response.status_code == 400, response.text
    assert "wallet" in response.json()["detail"]
    again = (await env.api("GET", f"/reconciliations/{rec['id']}")).json()
    assert again["status"] == "open" and again["resolution"] is None
    assert await env.balance(source_id) == before
