"""Fresh payouts are paid in chunks (#16): invoices created on one LNbits
connection, all stored in one transaction before any is paid, each paid on a
connection of its own, outcomes written in one transaction. These tests hold
the batching to the rules the one-at-a-time path kept: every invoice durable
on its row before the first sat moves, a row another run filled never paid
with ours, an invoice LNbits refuses recorded as a failure, nothing paid
twice. (The SIGKILL points are in tests/test_crash.py.)
"""

from __future__ import annotations

from api_helpers import bitspire_extra
from test_settlement_flow import _deactivate_all_clients, _setup


async def _detail(env, payment_hash: str) -> dict:
    from satmachineadmin import crud

    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement
    response = await env.api("GET", f"/settlements/{settlement.id}")
    assert response.status_code == 200, response.text
    return response.json()


async def test_every_invoice_is_stored_before_the_first_payment(env, monkeypatch):
    from satmachineadmin import crud, transaction_processor

    await _deactivate_all_clients(env)
    monkeypatch.setattr(transaction_processor, "PAYOUT_CHUNK", 3)
    source, commission, payer, clients = await _setup(env, ["10"] * 5)
    await env.fund(payer.id, 10_000)
    real_pay = transaction_processor._pay_stored_invoice
    seen: list[list] = []

    async def pay_and_look(source_wallet_id, bolt11, memo, extra):
        # What a crash right now would leave: the rows as committed.
        payouts = await crud.get_settlement_payouts(extra["settlement_id"])
        seen.append([(p.id, p.bolt11, p.status) for p in payouts])
        return await real_pay(source_wallet_id, bolt11, memo, extra)

    monkeypatch.setattr(transaction_processor, "_pay_stored_invoice", pay_and_look)
    payment_hash = await env.pay(
        payer.id,
        source.id,
        5_250,
        extra=bitspire_extra(5_000, 250, txid="batched-order"),
    )
    await env.settle()

    detail = await _detail(env, payment_hash)
    assert detail["status"] == "completed", detail["status_detail"]
    payouts = detail["payouts"]
    assert len(payouts) == 5 and all(p["status"] == "confirmed" for p in payouts)
    # 5 payouts + the commission (through transfer()).
    assert len(seen) == 6
    by_id = {p["id"]: p for p in payouts}
    # When the first payout is paid, the first chunk's three invoices are on
    # their rows (and they are the invoices that were paid); when the fourth
    # is, all five are.
    stored_then = {pid: bolt11 for pid, bolt11, _ in seen[0] if bolt11}
    assert len(stored_then) == 3
    for pid, bolt11 in stored_then.items():
        assert by_id[pid]["bolt11"] == bolt11
    assert all(status == "pending" for _, _, status in seen[0])
    assert {pid for pid, bolt11, _ in seen[3] if bolt11} == set(by_id)
    received = [await env.balance(w.id) for _, w in clients]
    assert sorted(received) == sorted(p["amount_sats"] for p in payouts)
    assert sum(received) == 5_000
    assert await env.balance(commission.id) == 250


async def test_a_row_another_run_filled_is_never_paid_with_our_invoice(
    env, monkeypatch
):
    """Between creating the chunk's invoices and storing them, another run
    stores its own invoice on one row: ours for that row is made unpayable and
    not paid. The retry pays that row once: with a new invoice (a stored one
    waiting for a retry is never paid: see
    test_a_stored_invoice_lnbits_listed_is_replaced_not_paid), so neither
    earlier invoice is ever paid."""
    from lnbits.core.services import create_invoice
    from satmachineadmin import crud, transaction_processor

    await _deactivate_all_clients(env)
    source, _commission, payer, clients = await _setup(env, ["10", "10", "10"])
    await env.fund(payer.id, 10_000)
    real_store = transaction_processor.set_payout_invoices
    theirs: dict = {}

    async def another_run_first(invoices):
        payout_id = invoices[0][0]
        payout = await crud.get_payment(payout_id)
        assert payout
        client = await crud.get_client(payout.client_id)
        assert client
        invoice = await create_invoice(
            wallet_id=client.wallet_id,
            amount=payout.amount_sats,
            memo="another run",
            internal=True,
            extra={"tag": "satmachineadmin"},
        )
        assert await crud.set_payout_invoice(
            payout_id, invoice.bolt11, invoice.payment_hash
        )
        theirs.update(id=payout_id, ours=invoices[0][2], hash=invoice.payment_hash)
        return await real_store(invoices)

    monkeypatch.setattr(transaction_processor, "set_payout_invoices", another_run_first)
    payment_hash = await env.pay(
        payer.id,
        source.id,
        3_150,
        extra=bitspire_extra(3_000, 150, txid="batched-contended"),
    )
    await env.settle()
    monkeypatch.setattr(transaction_processor, "set_payout_invoices", real_store)

    detail = await _detail(env, payment_hash)
    contended = next(p for p in detail["payouts"] if p["id"] == theirs["id"])
    assert contended["status"] == "pending"
    assert contended["payment_hash"] == theirs["hash"]
    assert not await transaction_processor._already_paid(theirs["ours"])
    assert detail["status"] == "payout_failed"

    response = await env.api("POST", f"/settlements/{detail['id']}/retry")
    assert response.status_code == 200, response.text
    await env.settle()
    detail = await _detail(env, payment_hash)
    assert detail["status"] == "completed", detail["status_detail"]
    assert all(p["status"] == "confirmed" for p in detail["payouts"])
    retried = next(p for p in detail["payouts"] if p["id"] == theirs["id"])
    assert retried["payment_hash"] not in (theirs["hash"], theirs["ours"])
    assert await transaction_processor._already_paid(retried["payment_hash"])
    assert not await transaction_processor._already_paid(theirs["hash"])
    assert not await transaction_processor._already_paid(theirs["ours"])
    received = [await env.balance(w.id) for _, w in clients]
    assert sum(received) == 3_000
    assert sorted(received) == sorted(p["amount_sats"] for p in detail["payouts"])


async def test_an_invoice_lnbits_refuses_is_a_recorded_failure(env, monkeypatch):
    """A payout whose invoice cannot be created in the batch goes through the
    one-at-a-time path, which records why; the others are paid."""
    from satmachineadmin import transaction_processor

    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["10", "10", "10"])
    await env.fund(payer.id, 10_000)
    refused = clients[1][1].id
    real_create = transaction_processor._create_internal_invoice

    async def refuse_one(wallet_id, sats, memo, extra, conn):
        if wallet_id == refused:
            raise ValueError("refused for the test")
        return await real_create(wallet_id, sats, memo, extra, conn)

    monkeypatch.setattr(transaction_processor, "_create_internal_invoice", refuse_one)
    payment_hash = await env.pay(
        payer.id,
        source.id,
        3_150,
        extra=bitspire_extra(3_000, 150, txid="batched-refused"),
    )
    await env.settle()
    monkeypatch.setattr(transaction_processor, "_create_internal_invoice", real_create)

    detail = await _detail(env, payment_hash)
    assert detail["status"] == "payout_failed"
    failed = [p for p in detail["payouts"] if p["status"] == "failed"]
    assert [p["wallet_id"] for p in failed] == [refused]
    assert "refused for the test" in failed[0]["error"]
    assert failed[0]["bolt11"] is None
    assert await env.balance(refused) == 0

    response = await env.api("POST", f"/settlements/{detail['id']}/retry")
    assert response.status_code == 200, response.text
    await env.settle()
    detail = await _detail(env, payment_hash)
    assert detail["status"] == "completed", detail["status_detail"]
    received = [await env.balance(w.id) for _, w in clients]
    assert sum(received) == 3_000
    assert await env.balance(commission.id) == 150


async def test_a_credit_lnbits_pending_check_undid_is_restored_once(env, monkeypatch):
    """LNbits' pending check (at start-up, then every
    lnbits_funding_source_pending_interval_seconds) lists pending payments,
    asks the funding source about each and writes back the whole row it listed.
    FakeWallet forgets its invoices on a restart (a real funding source never
    knew those made with internal=True) and answers "failed": an invoice of ours
    listed as pending and paid by a payout before the check got to it is written
    back failed while the source wallet's debit stands (seen once in
    test_crash after a SIGKILL). Reproduced here by doing exactly that write
    after the first payout is paid. The recovery pass sets the invoice paid
    again, once: the client receives its payout, the source paid it once, and
    nothing is minted."""
    from lnbits.core.crud import get_standalone_payment, update_payment
    from lnbits.core.models import PaymentState
    from satmachineadmin import transaction_processor
    from satmachineadmin.tasks import run_recovery

    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["10"] * 3)
    await env.fund(payer.id, 10_000)
    real_pay = transaction_processor._pay_stored_invoice
    undone: list[str] = []

    async def pay_then_stale_write(source_wallet_id, bolt11, memo, extra):
        from bolt11 import decode

        payment_hash = decode(bolt11).payment_hash
        listed = await get_standalone_payment(payment_hash, incoming=True)
        error = await real_pay(source_wallet_id, bolt11, memo, extra)
        if not undone and listed and listed.pending and extra.get("payout_id"):
            listed.status = PaymentState.FAILED  # LNbits' update_pending_payment
            await update_payment(listed)
            undone.append(payment_hash)
        return error

    monkeypatch.setattr(
        transaction_processor, "_pay_stored_invoice", pay_then_stale_write
    )
    payment_hash = await env.pay(
        payer.id, source.id, 3_150, extra=bitspire_extra(3_000, 150, txid="stale-write")
    )
    await env.settle()
    monkeypatch.setattr(transaction_processor, "_pay_stored_invoice", real_pay)
    detail = await _detail(env, payment_hash)
    assert detail["status"] == "completed", detail["status_detail"]
    assert len(undone) == 1
    received = [await env.balance(w.id) for _, w in clients]
    # The harm: the source paid 3 payouts, 2 clients hold theirs.
    assert sorted(received) == [0, 1_000, 1_000], received
    assert await env.balance(source.id) == 0

    for _ in range(2):  # the repair happens once, however many passes
        await run_recovery()
    received = [await env.balance(w.id) for _, w in clients]
    assert received == [1_000, 1_000, 1_000], received
    assert await env.balance(source.id) == 0
    assert await env.balance(commission.id) == 150
    assert await env.balance(payer.id) == 10_000 - 3_150
    invoice = await get_standalone_payment(undone[0], incoming=True)
    assert invoice and invoice.success


async def test_a_stored_invoice_lnbits_listed_is_replaced_not_paid(env, monkeypatch):
    """The harm above needs an invoice of ours that LNbits' pending check
    listed while pending and that a payout paid afterwards. A stored invoice
    waiting for a retry (an interrupted attempt, a failed payment; after a
    restart, every one is on LNbits' start-up list) is exactly that: a retry
    never pays it, it makes it unpayable and pays a new one. Here the check
    lists the waiting invoice, the retry runs, then LNbits writes the listed
    row back: the client holds its payout at once, without the repair."""
    from lnbits.core.crud import get_standalone_payment, update_payment
    from lnbits.core.models import PaymentState
    from satmachineadmin import crud, tasks, transaction_processor
    from satmachineadmin.tasks import run_recovery

    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["10"] * 3)
    await env.fund(payer.id, 10_000)
    real_pay = transaction_processor._pay_stored_invoice
    refused: list[str] = []

    async def refuse_the_first(source_wallet_id, bolt11, memo, extra):
        if not refused and extra.get("payout_id"):
            refused.append(extra["payout_id"])
            return "funding source unavailable"
        return await real_pay(source_wallet_id, bolt11, memo, extra)

    monkeypatch.setattr(transaction_processor, "_pay_stored_invoice", refuse_the_first)
    payment_hash = await env.pay(
        payer.id,
        source.id,
        3_150,
        extra=bitspire_extra(3_000, 150, txid="stored-listed"),
    )
    await env.settle()
    monkeypatch.setattr(transaction_processor, "_pay_stored_invoice", real_pay)
    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement

    async def payout(payout_id: str):
        rows = await crud.get_settlement_payouts(settlement.id)
        return next(p for p in rows if p.id == payout_id)

    waiting = await payout(refused[0])
    assert waiting and waiting.status == "failed" and waiting.payment_hash
    listed = await get_standalone_payment(waiting.payment_hash, incoming=True)
    assert listed and listed.pending  # on LNbits' list

    async def no_repair() -> int:
        return 0

    monkeypatch.setattr(tasks, "repair_half_paid_invoices", no_repair)
    await run_recovery()  # the retry
    listed.status = PaymentState.FAILED  # then LNbits' update_pending_payment
    await update_payment(listed)

    received = [await env.balance(w.id) for _, w in clients]
    assert received == [1_000, 1_000, 1_000], received
    assert await env.balance(source.id) == 0
    assert await env.balance(commission.id) == 150
    paid = await payout(refused[0])
    assert paid and paid.status == "confirmed"
    assert paid.payment_hash != waiting.payment_hash
    detail = await _detail(env, payment_hash)
    assert detail["status"] == "completed", detail["status_detail"]
