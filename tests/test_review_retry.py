"""Adversarial review of the payout retry path (transfer(), abandon_invoice(),
repair_half_paid_invoices()): rows written by other software, a source
wallet that is no longer configured, LNbits writing back rows it read earlier.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from test_settlement_flow import _deactivate_all_clients, _setup


def _extra(txid: str, principal: int, fee: int) -> dict:
    """bitSpire metadata at 100 sats per GTQ."""
    return {
        "source": "bitspire",
        "principal_sats": principal,
        "fee_sats": fee,
        "exchange_rate": "1000000",
        "currency": "GTQ",
        "txid": txid,
    }


async def _detail(env, payment_hash: str) -> dict:
    from satmachineadmin import crud

    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement
    response = await env.api("GET", f"/settlements/{settlement.id}")
    assert response.status_code == 200, response.text
    return response.json()


async def _one_failed_payout(env, monkeypatch, txid: str):
    """A settlement of three payouts whose first payout's payment failed (its
    invoice stored on the row, pending). Returns source, commission,
    clients, settlement_hash and the failed payout."""
    from satmachineadmin import crud, transaction_processor

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
        payer.id, source.id, 3_150, extra=_extra(txid, 3_000, 150)
    )
    await env.settle()
    monkeypatch.setattr(transaction_processor, "_pay_stored_invoice", real_pay)
    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement
    payouts = await crud.get_settlement_payouts(settlement.id)
    failed = next(p for p in payouts if p.id == refused[0])
    assert failed.status == "failed" and failed.payment_hash
    return SimpleNamespace(
        source=source,
        commission=commission,
        clients=clients,
        settlement_hash=payment_hash,
        failed=failed,
    )


async def _store_hash(payout_id: str, payment_hash: str | None, bolt11=None):
    """What other software may write into our table."""
    from satmachineadmin.crud import db

    await db.execute(
        "UPDATE satoshimachine.dca_payments SET payment_hash = :h, bolt11 = :b "
        "WHERE id = :id",
        {"h": payment_hash, "b": bolt11, "id": payout_id},
    )


async def test_a_stored_hash_of_someone_elses_paid_invoice_is_not_the_payout(
    env, monkeypatch
):
    """Other software writes into a failed payout's row the hash of a paid
    invoice the source wallet never paid (here: the settlement's own payment,
    the ATM's invoice into the source wallet). The retry must not take that
    payment for the payout: the client receives its sats, once."""
    s = await _one_failed_payout(env, monkeypatch, "foreign-paid-hash")
    from satmachineadmin.tasks import run_recovery

    await _store_hash(s.failed.id, s.settlement_hash, "lnbc1foreign")
    await run_recovery()

    received = [await env.balance(w.id) for _, w in s.clients]
    assert received == [1_000, 1_000, 1_000], received
    assert await env.balance(s.source.id) == 0
    assert await env.balance(s.commission.id) == 150
    detail = await _detail(env, s.settlement_hash)
    assert detail["status"] == "completed", detail["status_detail"]


async def test_a_stored_hash_of_an_unrelated_internal_payment_is_not_the_payout(
    env, monkeypatch
):
    """Same with the hash of an internal payment between two wallets that have
    nothing to do with this extension (its payer row `internal_<hash>` exists,
    from another wallet)."""
    s = await _one_failed_payout(env, monkeypatch, "unrelated-paid-hash")
    from satmachineadmin.tasks import run_recovery

    stranger = await env.wallet("stranger")
    shop = await env.wallet("shop")
    await env.fund(stranger.id, 5_000)
    unrelated = await env.pay(stranger.id, shop.id, 1_000, memo="coffee")
    await _store_hash(s.failed.id, unrelated, "lnbc1unrelated")
    await run_recovery()

    received = [await env.balance(w.id) for _, w in s.clients]
    assert received == [1_000, 1_000, 1_000], received
    assert await env.balance(s.source.id) == 0
    assert await env.balance(shop.id) == 1_000
    detail = await _detail(env, s.settlement_hash)
    assert detail["status"] == "completed", detail["status_detail"]


async def test_a_stored_hash_of_someone_elses_pending_invoice_is_left_alone(
    env, monkeypatch
):
    """A failed payout's row names a pending invoice of another wallet, not
    one this extension made: the retry pays the client with a new invoice and
    never touches that invoice (it stays payable by whoever it is for)."""
    from lnbits.core.crud import get_standalone_payment
    from lnbits.core.services import create_invoice

    s = await _one_failed_payout(env, monkeypatch, "foreign-pending-hash")
    from satmachineadmin.tasks import run_recovery

    shop = await env.wallet("shop")
    theirs = await create_invoice(wallet_id=shop.id, amount=1_000, memo="a sale")
    await _store_hash(s.failed.id, theirs.payment_hash, theirs.bolt11)
    await run_recovery()

    received = [await env.balance(w.id) for _, w in s.clients]
    assert received == [1_000, 1_000, 1_000], received
    invoice = await get_standalone_payment(theirs.payment_hash, incoming=True)
    assert invoice and invoice.pending, invoice and invoice.status


async def test_a_half_paid_payout_from_a_former_source_wallet_is_repaired(
    env, monkeypatch
):
    """LNbits' pending check undoes a payout's credit (the row it listed is
    written back failed after the payout paid it), then the operator moves the
    configuration to another source wallet. The settlement's wallet paid; the
    repair must still give the client its sats."""
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
    await env.pay(payer.id, source.id, 3_150, extra=_extra("former-source", 3_000, 150))
    await env.settle()
    monkeypatch.setattr(transaction_processor, "_pay_stored_invoice", real_pay)
    assert len(undone) == 1

    new_source = await env.wallet("new source")
    response = await env.api(
        "POST",
        "/config",
        json={"source_wallet_id": new_source.id, "commission_wallet_id": commission.id},
    )
    assert response.status_code == 201, response.text

    await run_recovery()
    received = [await env.balance(w.id) for _, w in clients]
    assert received == [1_000, 1_000, 1_000], received
    assert await env.balance(source.id) == 0
    invoice = await get_standalone_payment(undone[0], incoming=True)
    assert invoice and invoice.success


@pytest.mark.parametrize(
    "bolt11, payment_hash",
    [("lnbc1junk", None), ("", None), ("lnbc1junk", ""), ("", "")],
    ids=["bolt11-no-hash", "empty-bolt11", "bolt11-empty-hash", "both-empty"],
)
async def test_a_payout_row_without_a_usable_invoice_is_paid_once(
    env, monkeypatch, bolt11, payment_hash
):
    """Other software leaves a failed payout's row with an invoice we cannot
    use (a bolt11 and no hash, empty strings). The retry pays the client with
    a new invoice, once; it never stays unpaid for ever as "contended"."""
    from satmachineadmin import crud
    from satmachineadmin.tasks import run_recovery

    s = await _one_failed_payout(env, monkeypatch, f"odd-row-{bolt11}-{payment_hash}")
    await _store_hash(s.failed.id, payment_hash, bolt11)
    for _ in range(2):
        await run_recovery()

    received = [await env.balance(w.id) for _, w in s.clients]
    assert received == [1_000, 1_000, 1_000], received
    assert await env.balance(s.source.id) == 0
    payout = await crud.get_payment(s.failed.id)
    assert payout and payout.status == "confirmed", payout and payout.status
    detail = await _detail(env, s.settlement_hash)
    assert detail["status"] == "completed", detail["status_detail"]


async def test_a_commission_part_with_an_empty_hash_is_paid_once(env, monkeypatch):
    """A failed commission part whose row holds an empty hash (other
    software): the retry pays the commission wallet once."""
    from satmachineadmin import crud, machines, transaction_processor
    from satmachineadmin.crud import db
    from satmachineadmin.tasks import run_recovery

    await _deactivate_all_clients(env)
    source, commission, payer, _ = await _setup(env, ["10"] * 3)
    await env.fund(payer.id, 10_000)
    real_pay = transaction_processor._pay_stored_invoice

    async def refuse_commission(source_wallet_id, bolt11, memo, extra):
        if extra.get("kind") == "commission":
            return "funding source unavailable"
        return await real_pay(source_wallet_id, bolt11, memo, extra)

    monkeypatch.setattr(transaction_processor, "_pay_stored_invoice", refuse_commission)
    payment_hash = await env.pay(
        payer.id, source.id, 3_150, extra=_extra("commission-empty-hash", 3_000, 150)
    )
    await env.settle()
    monkeypatch.setattr(transaction_processor, "_pay_stored_invoice", real_pay)
    assert await env.balance(commission.id) == 0
    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement
    parts = await machines.get_commission_payouts(settlement.id)
    assert parts and all(p.status == "failed" for p in parts)
    for part in parts:
        await db.execute(
            "UPDATE satoshimachine.commission_payouts SET payment_hash = '' "
            "WHERE id = :id",
            {"id": part.id},
        )
    for _ in range(2):
        await run_recovery()

    assert await env.balance(commission.id) == 150
    assert await env.balance(source.id) == 0
    parts = await machines.get_commission_payouts(settlement.id)
    assert all(p.status == "confirmed" for p in parts), [p.status for p in parts]


async def test_a_stored_hash_of_the_sources_other_payment_is_not_the_payout(
    env, monkeypatch
):
    """The hash on a failed payout's row is the source wallet's own payment of
    someone else's invoice, of the payout's amount (the operator moved the
    remaining 1,000 sats out). Paid from the source, that amount: still not
    the payout. The retry must not confirm it (the source is empty now, so
    the payout stays failed, visibly)."""
    from satmachineadmin import crud
    from satmachineadmin.tasks import run_recovery

    s = await _one_failed_payout(env, monkeypatch, "source-other-payment")
    operator = await env.wallet("operator savings")
    moved = await env.pay(s.source.id, operator.id, 1_000, memo="savings")
    assert await env.balance(s.source.id) == 0
    await _store_hash(s.failed.id, moved, "lnbc1moved")
    await run_recovery()

    payout = await crud.get_payment(s.failed.id)
    assert payout and payout.status == "failed", payout and payout.status
    received = [await env.balance(w.id) for _, w in s.clients]
    assert sorted(received) == [0, 1_000, 1_000], received


async def test_an_invoice_failed_before_its_payment_is_never_taken_as_paid(
    env, monkeypatch
):
    """Between storing a payout's invoice and paying it, LNbits fails it (its
    pending check, the client's wallet page rechecking pending payments, or
    anyone's GET /api/v1/payments/<hash>: the funding source never knew an
    internal invoice). pay_invoice then finds no pending internal invoice and
    tries the funding source, which looks the (failed) invoice up again; a
    node that answers "pending" this time makes pay_invoice return the
    client's own unpaid invoice without raising. That is no payment: the
    payout must not be confirmed while the client received nothing."""
    from lnbits.core.crud import get_standalone_payment, update_payment
    from lnbits.core.models import PaymentState
    from lnbits.wallets import get_funding_source
    from lnbits.wallets.base import PaymentPendingStatus
    from satmachineadmin import crud, transaction_processor
    from satmachineadmin.tasks import run_recovery

    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["10"] * 3)
    await env.fund(payer.id, 10_000)
    real_pay = transaction_processor._pay_stored_invoice
    failed_first: list[str] = []
    funding_source = get_funding_source()

    async def answers_pending(checking_id: str):
        return PaymentPendingStatus()

    async def failed_by_lnbits_then_paid(source_wallet_id, bolt11, memo, extra):
        from bolt11 import decode

        if not failed_first and extra.get("payout_id"):
            invoice = await get_standalone_payment(
                decode(bolt11).payment_hash, incoming=True
            )
            assert invoice and invoice.pending
            invoice.status = PaymentState.FAILED  # LNbits' check: "failed"
            await update_payment(invoice)
            failed_first.append(extra["payout_id"])
            with monkeypatch.context() as m:  # then the node answers "pending"
                m.setattr(funding_source, "get_invoice_status", answers_pending)
                return await real_pay(source_wallet_id, bolt11, memo, extra)
        return await real_pay(source_wallet_id, bolt11, memo, extra)

    monkeypatch.setattr(
        transaction_processor, "_pay_stored_invoice", failed_by_lnbits_then_paid
    )
    payment_hash = await env.pay(
        payer.id, source.id, 3_150, extra=_extra("failed-before-paid", 3_000, 150)
    )
    await env.settle()
    monkeypatch.setattr(transaction_processor, "_pay_stored_invoice", real_pay)
    assert failed_first
    payout = await crud.get_payment(failed_first[0])
    assert payout
    received = {
        client["id"]: await env.balance(wallet.id) for client, wallet in clients
    }
    assert payout.status != "confirmed" or received[payout.client_id] == 1_000, (
        payout.status,
        received,
    )

    await run_recovery()  # the retry pays it with a new invoice
    received = {
        client["id"]: await env.balance(wallet.id) for client, wallet in clients
    }
    assert sorted(received.values()) == [1_000, 1_000, 1_000], received
    assert await env.balance(source.id) == 0
    assert await env.balance(commission.id) == 150
    detail = await _detail(env, payment_hash)
    assert detail["status"] == "completed", detail["status_detail"]


async def test_a_credit_written_back_pending_is_restored(env, monkeypatch):
    """Another LNbits write of a row read earlier: the client's wallet (its
    admin key) updates the labels of its incoming payout invoice; LNbits reads
    the row (pending), the payout pays it, LNbits writes the row back with its
    labels and its old status, pending. The source's debit stands, the client
    holds nothing, and a funding source that answers "pending" for an invoice
    it never knew keeps it so: the recovery pass must set it paid."""
    from lnbits.core.crud import get_standalone_payment, update_payment
    from satmachineadmin import transaction_processor
    from satmachineadmin.tasks import run_recovery

    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["10"] * 3)
    await env.fund(payer.id, 10_000)
    real_pay = transaction_processor._pay_stored_invoice
    undone: list[str] = []

    async def pay_then_labels_written_back(source_wallet_id, bolt11, memo, extra):
        from bolt11 import decode

        payment_hash = decode(bolt11).payment_hash
        read = await get_standalone_payment(payment_hash, incoming=True)
        error = await real_pay(source_wallet_id, bolt11, memo, extra)
        if not undone and read and read.pending and extra.get("payout_id"):
            read.labels = ["dca"]  # PUT /api/v1/payments/<hash>/labels
            await update_payment(read)
            undone.append(payment_hash)
        return error

    monkeypatch.setattr(
        transaction_processor, "_pay_stored_invoice", pay_then_labels_written_back
    )
    await env.pay(
        payer.id, source.id, 3_150, extra=_extra("labels-write-back", 3_000, 150)
    )
    await env.settle()
    monkeypatch.setattr(transaction_processor, "_pay_stored_invoice", real_pay)
    assert len(undone) == 1
    invoice = await get_standalone_payment(undone[0], incoming=True)
    assert invoice and invoice.pending

    for _ in range(2):
        await run_recovery()
    received = [await env.balance(w.id) for _, w in clients]
    assert received == [1_000, 1_000, 1_000], received
    assert await env.balance(source.id) == 0
    assert await env.balance(commission.id) == 150
    assert await env.balance(payer.id) == 10_000 - 3_150
    invoice = await get_standalone_payment(undone[0], incoming=True)
    assert invoice and invoice.success


async def test_another_payouts_hash_on_a_failed_payout_is_not_its_payment(
    env, monkeypatch
):
    """Other software copies a paid payout's hash onto a failed payout of the
    same settlement and amount: paid by the settlement's wallet, that amount,
    an invoice of this extension, but the other payout's. The failed payout
    must still be paid (each client once)."""
    from satmachineadmin import crud
    from satmachineadmin.tasks import run_recovery

    s = await _one_failed_payout(env, monkeypatch, "copied-hash")
    settlement = await crud.get_settlement_by_hash(s.settlement_hash)
    assert settlement
    paid = next(
        p
        for p in await crud.get_settlement_payouts(settlement.id)
        if p.status == "confirmed" and p.amount_sats == s.failed.amount_sats
    )
    await _store_hash(s.failed.id, paid.payment_hash, paid.bolt11)
    await run_recovery()

    received = [await env.balance(w.id) for _, w in s.clients]
    assert received == [1_000, 1_000, 1_000], received
    assert await env.balance(s.source.id) == 0
    payout = await crud.get_payment(s.failed.id)
    assert payout and payout.status == "confirmed"
    assert payout.payment_hash != paid.payment_hash
