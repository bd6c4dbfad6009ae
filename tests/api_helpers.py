"""Small builders shared by the API tests (auth matrix, validation, fuzz):
fresh clients, deposits and orphans made through the API itself."""

from __future__ import annotations

import itertools

PREFIX = "/satmachineadmin/api/v1/dca"


def _currency_codes():
    # Real ISO 4217 codes (deposits accept only those), none the tests name.
    from lnbits.utils.exchange_rates import currencies

    return iter(sorted(set(currencies) - {"GTQ", "USD", "EUR"}))


_codes = None
_names = itertools.count(1)


def fresh_currency() -> str:
    """A currency no other test uses: balances in it belong to one test."""
    global _codes
    if _codes is None:
        _codes = _currency_codes()
    return next(_codes)


def bitspire_extra(
    principal: int,
    fee: int,
    *,
    txid: str | None = None,
    currency: str = "GTQ",
    rate: str = "1000000",  # 100 sats per GTQ
    **more,
) -> dict:
    """What a bitSpire ATM puts in a settlement payment's `extra`."""
    extra = {
        "source": "bitspire",
        "principal_sats": principal,
        "fee_sats": fee,
        "exchange_rate": rate,
        "currency": currency,
        **more,
    }
    if txid is not None:
        extra["txid"] = txid
    return extra


async def register_client(env, name: str | None = None, **fields) -> dict:
    """An ordinary LNbits user with a wallet, registered as a DCA client."""
    name = name or f"api-client-{next(_names)}"
    _, wallet = await env.user_with_wallet(name)
    response = await env.api(
        "POST", "/clients", json={"wallet_id": wallet.id, "username": name, **fields}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def add_deposit(
    env, client_id: str, amount: str, currency: str = "GTQ", confirm: bool = False
) -> dict:
    response = await env.api(
        "POST",
        "/deposits",
        json={"client_id": client_id, "amount": amount, "currency": currency},
    )
    assert response.status_code == 201, response.text
    deposit = response.json()
    if confirm:
        response = await env.api(
            "PUT", f"/deposits/{deposit['id']}/status", json={"status": "confirmed"}
        )
        assert response.status_code == 200, response.text
        deposit = response.json()
    return deposit


async def make_orphan(env, sats: int = 10_000) -> tuple[dict, dict]:
    """A completed settlement in a currency no client holds: its whole principal
    is an open orphan. Sets the active config (fresh source wallet, no
    commission wallet). Returns (settlement detail, reconciliation)."""
    source = await env.wallet("orphan source")
    payer = await env.wallet("orphan payer")
    response = await env.api("POST", "/config", json={"source_wallet_id": source.id})
    assert response.status_code == 201, response.text
    await env.fund(payer.id, sats * 2)
    fee = sats // 20
    payment_hash = await env.pay(
        payer.id,
        source.id,
        sats,
        extra={
            "source": "bitspire",
            "principal_sats": sats - fee,
            "fee_sats": fee,
            "exchange_rate": "1000000",
            "currency": fresh_currency(),
            "txid": f"orphan-{next(_names)}",
        },
    )
    # The listener records the payment before it takes the processing lock:
    # under load, wait for the settlement itself, not only for the lock.
    detail: dict = {}
    for _ in range(100):
        await env.settle()
        response = await env.api("GET", "/settlements", params={"search": payment_hash})
        assert response.status_code == 200, response.text
        found = response.json()["data"]
        if found:
            detail = (await env.api("GET", f"/settlements/{found[0]['id']}")).json()
            if detail["status"] == "completed":
                break
    assert detail.get("status") == "completed", detail
    assert detail["reconciliation"], detail
    return detail, detail["reconciliation"]


async def snapshot(env) -> dict:
    """What the operator can see, for 'nothing changed' assertions. Fields the
    background recovery pass may touch (lookup bookkeeping, updated_at) are
    left out."""
    volatile = {"updated_at", "lookup_attempts", "last_lookup_at", "last_poll_time"}

    def clean(rows):
        return sorted(
            ({k: v for k, v in row.items() if k not in volatile} for row in rows),
            key=lambda row: row["id"],
        )

    async def all_rows(path: str):
        rows, offset = [], 0
        while True:
            response = await env.api(
                "GET", path, params={"limit": 1000, "offset": offset}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            page = body["data"] if isinstance(body, dict) else body
            rows.extend(page)
            if len(page) < 1000:
                return rows
            offset += 1000

    config = (await env.api("GET", "/config")).json()
    return {
        "clients": clean(await all_rows("/clients")),
        "deposits": clean(await all_rows("/deposits")),
        "payouts": clean(await all_rows("/payouts")),
        "settlements": clean(await all_rows("/settlements")),
        "reconciliations": clean(await all_rows("/reconciliations")),
        "config": {k: v for k, v in (config or {}).items() if k not in volatile},
    }


def after_first_read(monkeypatch, module, name: str, meanwhile):
    """Wrap `module.name` (an async read): its first call returns what it read,
    but only after `meanwhile()` has run. Later calls are untouched."""
    real = getattr(module, name)
    fired = []

    async def read_then_race(*args, **kwargs):
        result = await real(*args, **kwargs)
        if not fired:
            fired.append(True)
            await meanwhile()
        return result

    monkeypatch.setattr(module, name, read_then_race)
    return fired
