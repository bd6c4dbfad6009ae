"""Adversarial review of the newest money paths (fixed-mode deliveries,
several machines with their own source wallets, commission partners).

Each test either reproduces a bug found in review (fixed in the same branch)
or is an attack that held and stays as a guard. Invariants: a settlement's
payouts + commission + orphan == its amount; nothing paid twice; no sat of a
settlement ever lands in a source wallet while a client's balance is debited
for it; bad input answers 4xx and changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from api_helpers import fresh_currency, register_client
from test_balances import _conserved, _settle, client_extension_balance
from test_settlement_flow import _deactivate_all_clients, _setup

pytestmark = pytest.mark.asyncio(loop_scope="session")

S = "satoshimachine"


async def _odd_client(env, wallet_id: str, mode: str = "flow") -> str:
    """A client row as the client extension may write it: unvalidated, here
    naming a wallet its user does not own."""
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db

    account, _own_wallet = await env.user_with_wallet("someone")
    client_id = urlsafe_short_hash()
    await db.execute(
        f"INSERT INTO {S}.dca_clients (id, user_id, wallet_id, username, "
        "dca_mode, status) VALUES (:id, :u, :w, 'odd', :mode, 'active')",
        {"id": client_id, "u": account.id, "w": wallet_id, "mode": mode},
    )
    return client_id


async def _confirmed_deposit(env, client_id: str, amount: str, cur: str) -> None:
    response = await env.api(
        "POST",
        "/deposits",
        json={"client_id": client_id, "amount": amount, "currency": cur},
    )
    assert response.status_code == 201, response.text
    response = await env.api(
        "PUT",
        f"/deposits/{response.json()['id']}/status",
        json={"status": "confirmed"},
    )
    assert response.status_code == 200, response.text


async def test_client_row_naming_another_machines_source_wallet_is_never_paid(env):
    """Lead 1. A client row (written by other software) names machine B's
    source wallet. A settlement at machine A must not debit that client and
    send the sats into B's source wallet (the operator's): the client would be
    charged for sats it never receives. And what arrives in B from this
    extension is never taken for a new ATM settlement (the payout invoice
    carries the extension's tag), so nothing is split twice."""
    from satmachineadmin.crud import db

    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _commission, payer, _ = await _setup(env, [], currency=cur)
    machine_b = await env.wallet("machine B source")
    response = await env.api(
        "POST",
        "/machines",
        json={"device_id": f"npub1b{cur}", "source_wallet_id": machine_b.id},
    )
    assert response.status_code == 201, response.text
    client_id = await _odd_client(env, machine_b.id)
    await _confirmed_deposit(env, client_id, "100", cur)

    settlement = await _settle(env, source, payer, 20_000, 0, "1000000", cur, "b1")
    await env.settle()
    _conserved(settlement)
    # Nothing that reached B was recorded as a settlement of B.
    rows = await db.fetchall(
        f"SELECT id FROM {S}.settlements WHERE wallet_id = :w", {"w": machine_b.id}
    )
    assert rows == []
    # The client was not charged for sats parked in the operator's wallet.
    assert await env.balance(machine_b.id) == 0
    assert not [p for p in settlement["payouts"] if p["client_id"] == client_id]
    assert await client_extension_balance(client_id, cur) == Decimal("100.00")
    assert settlement["orphan_sats"] == 20_000
    assert await env.balance(source.id) == 20_000


async def test_config_refuses_a_client_or_partner_wallet_as_source(env):
    """Lead 2. The configured source wallet is where settlement sats wait
    (orphans, commission kept, scheduled fixed payouts). A DCA client's
    wallet or a commission partner's wallet as source wallet would leave
    those sats spendable by the client or the partner. The machines API
    refuses both; the config API must too, and change nothing."""
    await _deactivate_all_clients(env)
    source = await env.wallet("good source")
    response = await env.api("POST", "/config", json={"source_wallet_id": source.id})
    assert response.status_code == 201, response.text
    config = response.json()
    client = await register_client(env)
    partner = await env.wallet("partner")
    response = await env.api(
        "PUT",
        "/commission-recipients",
        json={"recipients": [{"wallet_id": partner.id, "percent": "100"}]},
    )
    assert response.status_code == 200, response.text
    try:
        for wallet_id, word in ((client["wallet_id"], "client"), (partner.id, "")):
            response = await env.api(
                "PUT", f"/config/{config['id']}", json={"source_wallet_id": wallet_id}
            )
            assert response.status_code == 400, response.text
            assert "source_wallet_id" in response.json()["detail"]
            assert word in response.json()["detail"]
            response = await env.api(
                "POST", "/config", json={"source_wallet_id": wallet_id}
            )
            assert response.status_code == 400, response.text
            now = (await env.api("GET", "/config")).json()
            assert now["id"] == config["id"]
            assert now["source_wallet_id"] == source.id
        # The configured commission wallet receives commission too.
        commission = await env.wallet("single commission")
        response = await env.api(
            "PUT",
            f"/config/{config['id']}",
            json={"commission_wallet_id": commission.id},
        )
        assert response.status_code == 200, response.text
        response = await env.api(
            "PUT",
            f"/config/{config['id']}",
            json={"source_wallet_id": commission.id},
        )
        # Commission kept in the source wallet: the one setting that stays
        # allowed (a part to the settlement's own wallet is `kept`).
        assert response.status_code == 200, response.text
    finally:
        await env.api("PUT", "/commission-recipients", json={"recipients": []})


async def test_scheduled_payout_follows_the_client_and_never_pays_a_source(env):
    """Lead 3. Fixed payouts wait for their slot. Before it: client B switches
    to flow, is deactivated and moves to a new wallet of its own; client C's
    row is rewritten (other software) to name a machine's source wallet. At
    the slot B is paid once, at its new wallet; C is not paid into the
    operator's wallet: its payout fails visibly, its fiat stays reserved, and
    the operator can cancel it into the orphan."""
    from satmachineadmin.crud import db
    from satmachineadmin.transaction_processor import deliver_scheduled
    from test_fixed_mode import _settle as _fixed_settle
    from test_fixed_mode import _world

    source, payer, [(_a, _wa), (b, wb), (c, wc)] = await _world(
        env,
        [("1000", None), ("1000", "100"), ("1000", "100")],
        fixed_delivery="daily",
        fixed_delivery_time="18:00",
    )
    detail = await _fixed_settle(env, payer, source, 300, "lead3-sched")
    assert detail["status"] == "scheduled", detail["status_detail"]
    rows = {p["client_id"]: p for p in detail["payouts"]}
    assert rows[b["id"]]["status"] == "pending"
    assert rows[c["id"]]["status"] == "pending"
    due = datetime.fromisoformat(rows[b["id"]]["deliver_after"])
    due = due if due.tzinfo else due.replace(tzinfo=timezone.utc)
    held = rows[b["id"]]["amount_sats"] + rows[c["id"]]["amount_sats"]
    assert await env.balance(source.id) == held

    # B: flow, inactive, a new wallet of its own user.
    new_wallet = await env.wallet("b new", user_id=b["user_id"])
    for body in (
        {"dca_mode": "flow"},
        {"wallet_id": new_wallet.id},
    ):
        response = await env.api("PUT", f"/clients/{b['id']}", json=body)
        assert response.status_code == 200, response.text
    response = await env.api(
        "PUT", f"/clients/{b['id']}/status", json={"status": "inactive"}
    )
    assert response.status_code == 200, response.text
    # C: its row now names machine M's source wallet.
    machine_wallet = await env.wallet("machine M source")
    response = await env.api(
        "POST",
        "/machines",
        json={"device_id": f"npub1m{source.id}", "source_wallet_id": machine_wallet.id},
    )
    assert response.status_code == 201, response.text
    await db.execute(
        f"UPDATE {S}.dca_clients SET wallet_id = :w WHERE id = :id",
        {"w": machine_wallet.id, "id": c["id"]},
    )

    assert await deliver_scheduled(due + timedelta(seconds=5)) == 1
    assert await deliver_scheduled(due + timedelta(seconds=10)) == 0
    assert await env.balance(new_wallet.id) == rows[b["id"]]["amount_sats"]
    assert await env.balance(wb.id) == 0
    assert await env.balance(machine_wallet.id) == 0
    assert await env.balance(wc.id) == 0
    final = (await env.api("GET", f"/settlements/{detail['id']}")).json()
    by_client = {p["client_id"]: p for p in final["payouts"]}
    assert by_client[b["id"]]["status"] == "confirmed"
    assert by_client[c["id"]]["status"] == "failed"
    assert "source wallet" in by_client[c["id"]]["error"]
    assert final["status"] == "payout_failed"
    assert await env.balance(source.id) == rows[c["id"]]["amount_sats"]
    # C's fiat is still reserved (not paid, not released).
    balance = (await env.api("GET", f"/clients/{c['id']}/balance")).json()
    assert Decimal(str(balance["reserved_fiat"])) == Decimal(
        str(rows[c["id"]]["amount_fiat"])
    )
    # A retry pays nothing into the source wallet either.
    response = await env.api("POST", f"/settlements/{detail['id']}/retry")
    assert response.status_code == 200, response.text
    assert await env.balance(machine_wallet.id) == 0
    # The operator gives up on it: its sats join the orphan, all adds up.
    response = await env.api(
        "POST",
        f"/payouts/{by_client[c['id']]['id']}/cancel",
        json={"reason": "wallet is not the client's"},
    )
    assert response.status_code == 200, response.text
    final = (await env.api("GET", f"/settlements/{detail['id']}")).json()
    assert final["status"] == "completed", final["status_detail"]
    live = sum(p["amount_sats"] for p in final["payouts"] if p["status"] != "cancelled")
    assert live + final["commission_sats"] + final["orphan_sats"] == (
        final["amount_sats"]
    )
    assert await client_extension_balance(c["id"], "GTQ") == Decimal("1000.00")


@pytest.mark.parametrize("how", ["bitspire", "manual"])
async def test_a_padded_device_id_still_pays_its_machines_partners(env, how):
    """Lead 5 (strange device ids). A machine is stored under its trimmed id
    (POST /machines and machine_seen strip it), but a settlement kept the id
    as the ATM metadata or the operator's typing gave it: ' npub1x\\n' found
    no machine, so its commission went to the global partners instead of
    the machine's own, and its figures were counted under another machine."""
    from satmachineadmin.crud import db

    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source = await env.wallet("source")
    payer = await env.wallet("payer")
    await env.fund(payer.id, 50_000)
    global_partner = await env.wallet("global partner")
    host = await env.wallet("machine host")
    response = await env.api(
        "POST",
        "/config",
        json={"source_wallet_id": source.id, "commission_wallet_id": global_partner.id},
    )
    assert response.status_code == 201, response.text
    device = f"npub1pad{how}{cur}"
    response = await env.api("POST", "/machines", json={"device_id": device})
    assert response.status_code == 201, response.text
    machine = response.json()
    response = await env.api(
        "PUT",
        f"/machines/{machine['id']}/commission-recipients",
        json={"recipients": [{"wallet_id": host.id, "percent": "100"}]},
    )
    assert response.status_code == 200, response.text
    padded = f"  {device} \n"
    extra = {
        "source": "bitspire",
        "principal_sats": 9_000,
        "fee_sats": 1_000,
        "exchange_rate": "1000000",
        "currency": cur,
        "txid": f"pad-{how}",
    }
    if how == "bitspire":
        extra["machine_npub"] = padded
        payment_hash = await env.pay(payer.id, source.id, 10_000, extra=extra)
    else:
        payment_hash = await env.pay(payer.id, source.id, 10_000, memo="no data")
    await env.settle()
    from satmachineadmin import crud

    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement
    if how == "manual":
        env.market(cur, 1_000_000)
        response = await env.api(
            "PUT",
            f"/settlements/{settlement.id}/cash-out",
            json={
                "fiat_amount": "90",
                "fiat_code": cur,
                "principal_sats": 9_000,
                "device_id": padded,
            },
        )
        assert response.status_code == 200, response.text
    detail = (await env.api("GET", f"/settlements/{settlement.id}")).json()
    assert detail["status"] == "completed", detail["status_detail"]
    assert [
        (p["wallet_id"], p["amount_sats"]) for p in detail["commission_payouts"]
    ] == [(host.id, 1_000)]
    assert await env.balance(host.id) == 1_000
    assert await env.balance(global_partner.id) == 0
    assert detail["device_id"] == device
    rows = await db.fetchall(
        f"SELECT id FROM {S}.machines WHERE device_id = :d", {"d": device}
    )
    assert len(rows) == 1
    machines = {m["device_id"]: m for m in (await env.api("GET", "/machines")).json()}
    assert machines[device]["figures"]["commission_sats"] == 1_000


async def test_orphan_is_never_attributed_to_a_client_naming_a_source_wallet(env):
    """Attributing an orphan to a client credits it a deposit and pays the
    orphan's sats to its wallet. A client row naming a source wallet (another
    machine's) would get a deposit and a confirmed payout while the sats only
    move between the operator's wallets: refused (400), nothing changes."""
    from api_helpers import make_orphan

    await _deactivate_all_clients(env)
    _detail, rec = await make_orphan(env, 10_000)
    machine_b = await env.wallet("machine B source")
    response = await env.api(
        "POST",
        "/machines",
        json={"device_id": f"npub1orph{rec['id']}", "source_wallet_id": machine_b.id},
    )
    assert response.status_code == 201, response.text
    client_id = await _odd_client(env, machine_b.id)
    response = await env.api(
        "POST",
        f"/reconciliations/{rec['id']}/resolve",
        json={"action": "attribute_to_client", "client_id": client_id},
    )
    assert response.status_code == 400, response.text
    assert "source wallet" in response.json()["detail"]
    await env.settle()
    assert await env.balance(machine_b.id) == 0
    after = (await env.api("GET", f"/reconciliations/{rec['id']}")).json()
    assert after["status"] == "open"
    deposits = (
        await env.api("GET", "/deposits", params={"client_id": client_id})
    ).json()
    assert deposits == []


async def test_two_machines_at_once_and_a_retry_racing_recovery(env, monkeypatch):
    """Lead 4 (held). Two settlements arrive at once on two machines with
    their own source wallets, one client's 100.00 in their currency: it is
    paid 100.00 once in all, never twice. A commission part that failed is
    retried twice at once while a recovery pass runs and the recipients are
    changed meanwhile: it is paid once, to the wallet it was split for."""
    import asyncio

    from satmachineadmin import transaction_processor
    from satmachineadmin.tasks import run_recovery

    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source_a, _commission, payer, [(client, wallet)] = await _setup(
        env, ["100"], currency=cur
    )
    source_b = await env.wallet("machine B source")
    response = await env.api(
        "POST",
        "/machines",
        json={"device_id": f"npub1race{cur}", "source_wallet_id": source_b.id},
    )
    assert response.status_code == 201, response.text
    partners = [await env.wallet(f"race partner {i}") for i in range(2)]
    response = await env.api(
        "PUT",
        "/commission-recipients",
        json={
            "recipients": [
                {"wallet_id": partners[0].id, "percent": "50"},
                {"wallet_id": partners[1].id, "percent": "50"},
            ]
        },
    )
    assert response.status_code == 200, response.text
    real_pay = transaction_processor.pay_invoice
    failed: list[str] = []

    async def flaky_pay(**kw):
        extra = kw.get("extra") or {}
        if extra.get("kind") == "commission" and len(failed) < 2:
            from satmachineadmin.machines import get_commission_payout

            part = await get_commission_payout(extra["commission_payout_id"])
            if part and part.wallet_id == partners[1].id:
                failed.append(part.id)
                raise RuntimeError("route temporarily unavailable")
        return await real_pay(**kw)

    monkeypatch.setattr(transaction_processor, "pay_invoice", flaky_pay)
    await env.fund(payer.id, 40_000)

    def extra(txid: str) -> dict:
        return {
            "source": "bitspire",
            "principal_sats": 10_000,
            "fee_sats": 1_000,
            "exchange_rate": "1000000",
            "currency": cur,
            "txid": txid,
        }

    hashes = await asyncio.gather(
        env.pay(payer.id, source_a.id, 11_000, extra=extra("race-a")),
        env.pay(payer.id, source_b.id, 11_000, extra=extra("race-b")),
    )
    await env.settle()
    from satmachineadmin import crud

    details = []
    for payment_hash in hashes:
        settlement = await crud.get_settlement_by_hash(payment_hash)
        assert settlement
        details.append((await env.api("GET", f"/settlements/{settlement.id}")).json())
    paid = [p for d in details for p in d["payouts"] if p["client_id"] == client["id"]]
    assert sum(p["amount_sats"] for p in paid) == 10_000
    assert sum(Decimal(str(p["amount_fiat"])) for p in paid) == Decimal("100")
    assert await env.balance(wallet.id) == 10_000
    assert [await env.balance(w.id) for w in partners] == [1_000, 0]
    monkeypatch.setattr(transaction_processor, "pay_invoice", real_pay)
    failing = [
        p for d in details for p in d["commission_payouts"] if p["status"] == "failed"
    ]
    assert len(failing) == 2
    # Recipients change while the retries and a recovery pass race.
    newcomer = await env.wallet("newcomer")
    results = await asyncio.gather(
        *[
            env.api("POST", f"/commission-payouts/{p['id']}/retry")
            for p in failing
            for _ in range(2)
        ],
        run_recovery(),
        env.api(
            "PUT",
            "/commission-recipients",
            json={"recipients": [{"wallet_id": newcomer.id, "percent": "100"}]},
        ),
    )
    for response in results[:4]:
        assert response.status_code in (200, 409), response.text
    await env.settle()
    assert [await env.balance(w.id) for w in partners] == [1_000, 1_000]
    assert await env.balance(newcomer.id) == 0
    for payment_hash, source in zip(hashes, (source_a, source_b), strict=True):
        settlement = await crud.get_settlement_by_hash(payment_hash)
        assert settlement
        detail = (await env.api("GET", f"/settlements/{settlement.id}")).json()
        assert detail["status"] == "completed", detail["status_detail"]
        _conserved(detail)
        assert await env.balance(source.id) == detail["orphan_sats"]
    await env.api("PUT", "/commission-recipients", json={"recipients": []})


async def _share_of(env, wallet, user_id: str, approved: bool = True):
    """A wallet of `user_id` that is LNbits' share of `wallet` (approved,
    may receive): invoices "to" it are created on `wallet` itself. Not
    approved: the share exists, the owner has not accepted it yet."""
    from lnbits.core.crud import create_wallet, get_wallet, update_wallet
    from lnbits.core.models.wallets import (
        WalletPermission,
        WalletSharePermission,
        WalletShareStatus,
        WalletType,
    )

    shared = await create_wallet(
        user_id=user_id,
        wallet_name="shared source",
        wallet_type=WalletType.LIGHTNING_SHARED,
        shared_wallet_id=wallet.id,
    )
    if not approved:
        pending = await get_wallet(shared.id)
        assert pending and pending.source_wallet_id == shared.id
        return shared
    owner = await get_wallet(wallet.id)
    assert owner
    owner.extra.shared_with.append(
        WalletSharePermission(
            username="client",
            shared_with_wallet_id=shared.id,
            permissions=[
                WalletPermission.VIEW_PAYMENTS,
                WalletPermission.RECEIVE_PAYMENTS,
            ],
            status=WalletShareStatus.APPROVED,
        )
    )
    await update_wallet(owner)
    resolved = await get_wallet(shared.id)
    assert resolved and resolved.source_wallet_id == wallet.id
    return shared


async def test_a_share_of_the_source_wallet_is_never_a_payout_target(env):
    """LNbits 1.6 shared wallets: a wallet shared with a user is a wallet of
    that user whose invoices are created on the shared (owner's) wallet. A
    client on a share of the source wallet was accepted at registration and
    its payouts were invoices on the source wallet paid by the source wallet
    itself: "confirmed", the client debited, not a sat moved."""
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _commission, payer, [(client, own)] = await _setup(
        env, ["100"], currency=cur
    )
    shared = await _share_of(env, source, client["user_id"])
    # A row other software rewrote to name it: never "paid" to itself.
    from satmachineadmin.crud import db

    await db.execute(
        f"UPDATE {S}.dca_clients SET wallet_id = :w WHERE id = :id",
        {"w": shared.id, "id": client["id"]},
    )
    settlement = await _settle(env, source, payer, 20_000, 0, "1000000", cur, "sh")
    confirmed = [p for p in settlement["payouts"] if p["status"] == "confirmed"]
    sats_out = 20_000 - await env.balance(source.id)
    assert sum(p["amount_sats"] for p in confirmed) == sats_out, (confirmed, sats_out)
    assert await client_extension_balance(client["id"], cur) == Decimal("100.00") - sum(
        (Decimal(str(p["amount_fiat"])) for p in confirmed), Decimal(0)
    )
    assert confirmed == []
    # Registration refuses it as it refuses the source wallet itself.
    await db.execute(
        f"UPDATE {S}.dca_clients SET wallet_id = :w WHERE id = :id",
        {"w": own.id, "id": client["id"]},
    )
    response = await env.api(
        "POST", "/clients", json={"wallet_id": shared.id, "username": "shared"}
    )
    assert response.status_code == 400, response.text
    response = await env.api(
        "PUT", f"/clients/{client['id']}", json={"wallet_id": shared.id}
    )
    assert response.status_code == 400, response.text


async def test_a_share_of_a_source_wallet_not_yet_approved_is_refused_everywhere(env):
    """LNbits' `Wallet.source_wallet_id` names the shared wallet only once the
    owner approved the share; approving it later would turn a wallet accepted
    here into one that receives into the source wallet. Every check spells
    "the wallet it receives into" the same way (machines.receiving_wallet_id),
    counting a share whether approved or not: as a client's wallet, the
    commission wallet, a commission partner and an orphan's destination it is
    refused (400) and nothing changes."""
    from api_helpers import make_orphan

    await _deactivate_all_clients(env)
    _detail, rec = await make_orphan(env, 10_000)
    config = (await env.api("GET", "/config")).json()
    source_id = config["source_wallet_id"]
    from lnbits.core.crud import get_wallet

    source = await get_wallet(source_id)
    assert source
    client_user, _own = await env.user_with_wallet("pending share client")
    shared = await _share_of(env, source, client_user.id, approved=False)

    response = await env.api(
        "POST", "/clients", json={"wallet_id": shared.id, "username": "pending"}
    )
    assert response.status_code == 400, response.text
    response = await env.api(
        "POST",
        "/config",
        json={"source_wallet_id": source_id, "commission_wallet_id": shared.id},
    )
    assert response.status_code == 400, response.text
    response = await env.api(
        "PUT",
        "/commission-recipients",
        json={"recipients": [{"wallet_id": shared.id, "percent": "100"}]},
    )
    assert response.status_code == 400, response.text
    response = await env.api(
        "POST",
        f"/reconciliations/{rec['id']}/resolve",
        json={"action": "send_to_wallet", "wallet_id": shared.id},
    )
    assert response.status_code == 400, response.text
    await env.settle()
    after = (await env.api("GET", f"/reconciliations/{rec['id']}")).json()
    assert after["status"] == "open"
    assert (await env.api("GET", "/config")).json() == config
    recipients = (await env.api("GET", "/commission-recipients")).json()
    assert all(r["wallet_id"] != shared.id for r in recipients)
