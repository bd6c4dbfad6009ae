"""Benchmark: one settlement split among N clients, against the floor.

    .venv/bin/python bench/bench_settlement.py [--n 10,100,1000,5000]
        [--db sqlite|postgres|both] [--payouts 100000]

Each N runs in its own process on a fresh database (LNbits fixes its database
at import): a real LNbits app in-process, FakeWallet, a temp data folder or a
throwaway PostgreSQL server. Everything is set up first, then timed:

* floor (before): N internal payments done bare, `create_invoice(internal=True)`
  + `pay_invoice` from a funded wallet to the N clients' wallets: what LNbits
  itself costs, which the extension cannot beat.
* extension: N clients with confirmed deposits that cover the cash, one ATM
  settlement paid into the source wallet; timed from the payment until the
  settlement is complete (listener, lookup, plan, N payouts, commission).
* floor (after): the bare payments again. LNbits gets slower per payment as its
  tables grow, so the extension is compared with the mean of both floors.

Reported: wall time, time per payout, SQL statements per payout (every
statement either database executes, counted with a SQLAlchemy cursor event on
both engines: LNbits' own and the extension's), peak Python memory
(tracemalloc) and the extension/floor ratio. Then, in another fresh database
with 5000 clients and `--payouts` payout rows, the median time of the
dashboard's list requests.

Prints figures; asserts nothing. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RATE = "1000000"  # GTQ per BTC: 100 sats per GTQ
DEPOSIT = Decimal("10.00")  # per client; a settlement uses half of it


def _prepare_environment(database_url: str | None) -> None:
    from lnbits_sandbox import offline_settings, prepare_run_dir

    run_dir = prepare_run_dir(Path(tempfile.mkdtemp(prefix="satmachine-bench-")))
    os.environ.update(offline_settings(run_dir))
    if database_url:
        os.environ["LNBITS_DATABASE_URL"] = database_url
    else:
        os.environ.pop("LNBITS_DATABASE_URL", None)
    os.chdir(run_dir)


class StatementCounter:
    """Counts SQL statements on the given async engines."""

    def __init__(self, engines) -> None:
        from sqlalchemy import event

        self.count = 0
        self.trace: Counter[str] = Counter()
        for engine in engines:
            event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, *args, **kwargs) -> None:
        self.count += 1
        if os.environ.get("BENCH_TRACE"):
            self.trace[" ".join(statement.split())[:110]] += 1


class Bench:
    def __init__(self, http, token: str, super_user: str) -> None:
        self.http = http
        self.auth = {"Authorization": f"Bearer {token}"}
        self.super_user = super_user

    async def wallet(self, name: str, user_id: str | None = None):
        from lnbits.core.crud import create_wallet

        return await create_wallet(user_id=user_id or self.super_user, wallet_name=name)

    async def fund(self, wallet_id: str, sats: int) -> None:
        from lnbits.core.crud import get_wallet
        from lnbits.core.services import update_wallet_balance

        wallet = await get_wallet(wallet_id)
        assert wallet
        await update_wallet_balance(wallet, sats)

    async def api(self, method: str, path: str, **kw):
        return await self.http.request(
            method, f"/satmachineadmin/api/v1/dca{path}", headers=self.auth, **kw
        )

    async def clients(self, n: int, tag: str) -> list:
        """n client users with wallets and a confirmed deposit each, written
        straight through the extension's crud (setup is not what is timed)."""
        from lnbits.core.services import create_user_account
        from lnbits.helpers import urlsafe_short_hash
        from satmachineadmin import crud
        from satmachineadmin.models import DcaClient, DcaDeposit, utc_now

        earlier = utc_now() - timedelta(minutes=5)
        wallets = []
        for i in range(n):
            account = await create_user_account()
            wallet = await self.wallet(f"{tag}-{i}", account.id)
            client = DcaClient(
                id=urlsafe_short_hash(),
                user_id=account.id,
                wallet_id=wallet.id,
                username=f"{tag}-{i}",
                created_at=earlier,
                updated_at=earlier,
            )
            await crud.create_client(client)
            await crud.create_deposit(
                DcaDeposit(
                    id=urlsafe_short_hash(),
                    client_id=client.id,
                    amount=DEPOSIT,
                    status="confirmed",
                    created_at=earlier,
                    confirmed_at=earlier,
                )
            )
            wallets.append(wallet)
        return wallets


async def _wait_processed(recorded_before, timeout: float = 3600) -> None:
    """Until the listener has recorded the settlement and the processor has
    let go of it. Watches in-process state, so waiting adds no SQL to what is
    counted. (The listener takes the lock right after recording, without
    yielding in between.)"""
    from satmachineadmin.tasks import listener_status
    from satmachineadmin.transaction_processor import processing_lock

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recorded = listener_status["last_payment_at"] != recorded_before
        if recorded and not processing_lock.locked():
            return
        await asyncio.sleep(0.002)
    raise RuntimeError("settlement was not processed")


async def prepare_extension(bench: Bench, n: int):
    """Source wallet configured, n funded clients, and the ATM's invoice."""
    from lnbits.core.services import create_invoice

    source = await bench.wallet(f"source-{n}")
    payer = await bench.wallet(f"payer-{n}")
    response = await bench.api("POST", "/config", json={"source_wallet_id": source.id})
    assert response.status_code == 201, response.text
    client_wallets = await bench.clients(n, f"ext{n}")
    principal = n * 500  # 5.00 GTQ per client at 100 sats per GTQ: all covered
    fee = n * 25
    await bench.fund(payer.id, principal + fee)
    invoice = await create_invoice(
        wallet_id=source.id,
        amount=principal + fee,
        memo="ATM",
        extra={
            "source": "bitspire",
            "principal_sats": principal,
            "fee_sats": fee,
            "exchange_rate": RATE,
            "currency": "GTQ",
            "txid": f"bench-{n}",
        },
    )
    return (payer, invoice, principal), client_wallets


async def bench_extension(
    counter: StatementCounter, n: int, payer, invoice, principal: int
) -> dict:
    from lnbits.core.services import pay_invoice
    from satmachineadmin.tasks import listener_status

    recorded_before = listener_status["last_payment_at"]
    tracemalloc.start()
    statements = counter.count
    started = time.perf_counter()
    await pay_invoice(wallet_id=payer.id, payment_request=invoice.bolt11)
    await _wait_processed(recorded_before)
    seconds = time.perf_counter() - started
    statements = counter.count - statements
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    from satmachineadmin import crud

    settlement = await crud.get_settlement_by_hash(invoice.payment_hash)
    assert settlement and settlement.status == "completed", settlement
    assert settlement.distributed_sats == principal, settlement
    return {"seconds": seconds, "statements": statements, "peak_mb": peak / 2**20}


async def prepare_floor(bench: Bench, targets: list, tag: str):
    """A source wallet funded for one bare payment to each target."""
    source = await bench.wallet(f"floor-source-{tag}")
    await bench.fund(source.id, len(targets) * 500)
    return source


async def bench_floor(counter: StatementCounter, source, targets: list) -> dict:
    from lnbits.core.services import create_invoice, pay_invoice

    tracemalloc.start()
    statements = counter.count
    started = time.perf_counter()
    for wallet in targets:
        invoice = await create_invoice(
            wallet_id=wallet.id, amount=500, memo="DCA", internal=True
        )
        await pay_invoice(wallet_id=source.id, payment_request=invoice.bolt11)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "seconds": seconds,
        "statements": counter.count - statements,
        "peak_mb": peak / 2**20,
    }


async def _bulk_insert(table: str, rows: list[dict]) -> None:
    """Rows straight into the extension's table, 1000 per statement (setup
    is not what is timed)."""
    from satmachineadmin.crud import db

    timestamps = {"created_at", "updated_at", "paid_at"}
    columns = list(rows[0]) if rows else []
    for start in range(0, len(rows), 1000):
        values = []
        params: dict = {}
        for j, row in enumerate(rows[start : start + 1000]):
            names = []
            for key in columns:
                name = f"{key}_{j}"
                params[name] = row[key]
                names.append(
                    db.timestamp_placeholder(name) if key in timestamps else f":{name}"
                )
            values.append("(" + ", ".join(names) + ")")
        await db.execute(
            f"INSERT INTO satoshimachine.{table} ({', '.join(columns)}) "
            f"VALUES {', '.join(values)}",
            params,
        )


async def bench_pages(bench: Bench, payouts: int) -> dict:
    """The dashboard's own list requests, with 5000 clients and a ledger of
    `payouts` payouts in settlements of 100 (each client paid in turn)."""
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db
    from satmachineadmin.models import utc_now

    clients = [
        row["id"]
        for row in await db.fetchall("SELECT id FROM satoshimachine.dca_clients")
    ]
    per_settlement = 100
    now = utc_now()
    settlements = [
        {
            "id": urlsafe_short_hash(),
            "payment_hash": urlsafe_short_hash() + urlsafe_short_hash(),
            "wallet_id": "bench-source",
            "amount_sats": per_settlement * 500,
            "paid_at": now - timedelta(minutes=i),
            "status": "completed",
            "fiat_amount": Decimal(per_settlement * 5),
            "fiat_code": "GTQ",
            "principal_sats": per_settlement * 500,
            "commission_sats": 0,
            "orphan_sats": 0,
            "distributed_sats": per_settlement * 500,
            "distributed_fiat": Decimal(per_settlement * 5),
            "exchange_rate": 100.0,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(payouts // per_settlement)
    ]
    await _bulk_insert("settlements", settlements)
    await _bulk_insert(
        "dca_payments",
        [
            {
                "id": urlsafe_short_hash(),
                "client_id": clients[i % len(clients)],
                "settlement_id": settlements[i // per_settlement]["id"],
                "amount_sats": 500,
                "amount_fiat": Decimal("5.00"),
                "exchange_rate": 100.0,
                "transaction_type": "flow",
                "status": "confirmed",
                "created_at": now,
            }
            for i in range(len(settlements) * per_settlement)
        ],
    )
    newest = {"sortby": "paid_at", "direction": "desc"}
    figures = {}
    for label, path, params in (
        ("clients tab (1000)", "/clients", {"limit": 1000, "sortby": "username"}),
        (
            "clients by balance (100)",
            "/clients",
            {"limit": 100, "sortby": "remaining_balance"},
        ),
        ("settlements tab (20)", "/settlements", {"limit": 20, **newest}),
        ("settlements chart (1000)", "/settlements", {"limit": 1000, **newest}),
        ("payouts (20)", "/payouts", {"limit": 20}),
        ("one settlement + payouts", "/settlements/" + settlements[0]["id"], {}),
        ("summary", "/summary", {}),
    ):
        times = []
        for _ in range(5):
            started = time.perf_counter()
            response = await bench.api("GET", path, params=params)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
        figures[label] = statistics.median(times) * 1000
    count = (await bench.api("GET", "/payouts", params={"limit": 1})).json()["total"]
    return {"ms": figures, "payouts": count, "clients": len(clients)}


@asynccontextmanager
async def lnbits_app():
    """A real LNbits app in-process, first install done, extension enabled."""
    import httpx
    from lnbits.app import create_app
    from lnbits.core.db import db as core_db
    from lnbits.settings import settings

    app = create_app()
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as http:
            credentials = {"username": "bench", "password": "bench-password-1"}
            response = await http.put(
                "/api/v1/auth/first_install",
                json={**credentials, "password_repeat": credentials["password"]},
            )
            assert response.status_code == 200, response.text
            response = await http.post("/api/v1/auth", json=credentials)
            token = response.json()["access_token"]
            await http.put(
                "/api/v1/extension/satmachineadmin/enable",
                headers={"Authorization": f"Bearer {token}"},
            )
            from satmachineadmin.crud import db as ext_db

            counter = StatementCounter(
                {id(d.engine): d.engine for d in (core_db, ext_db)}.values()
            )
            yield Bench(http, token, settings.super_user), counter


async def run_size(n: int) -> dict:
    """One N on a fresh database. Everything is set up first; then the bare
    floor, the extension's settlement, and the floor again: LNbits gets slower
    per payment as its tables grow, so the extension is compared with the mean
    of a floor measured before it and one measured after it."""
    async with lnbits_app() as (bench, counter):
        settlement, client_wallets = await prepare_extension(bench, n)
        # The bare payments go to the clients' own wallets: the same wallets
        # and the same database as the settlement's payouts. (Extra wallets
        # would slow LNbits down for both: on SQLite its balances view scans
        # every wallet for each balance it looks up.)
        before_source = await prepare_floor(bench, client_wallets, "before")
        after_source = await prepare_floor(bench, client_wallets, "after")
        before = await bench_floor(counter, before_source, client_wallets)
        counter.trace.clear()
        ext = await bench_extension(counter, n, *settlement)
        for statement, times in counter.trace.most_common(40):
            print(f"TRACE {times:6} {statement}", file=sys.stderr)
        after = await bench_floor(counter, after_source, client_wallets)
    return {"n": n, "extension": ext, "floor_before": before, "floor_after": after}


async def run_pages(payouts: int) -> dict:
    async with lnbits_app() as (bench, _):
        await bench.clients(5000, "pages")
        return await bench_pages(bench, payouts)


def _row(label: str, result: dict) -> str:
    n, ext = result["n"], result["extension"]
    before, after = result["floor_before"], result["floor_after"]
    floor_seconds = (before["seconds"] + after["seconds"]) / 2
    floor_statements = (before["statements"] + after["statements"]) / 2
    return (
        f"{label:8} N={n:<5} extension {ext['seconds']:8.2f} s "
        f"({ext['seconds'] / n * 1000:6.1f} ms/payout, "
        f"{ext['statements'] / n:4.1f} SQL/payout, peak {ext['peak_mb']:5.1f} MB) | "
        f"floor {before['seconds'] / n * 1000:6.1f} / "
        f"{after['seconds'] / n * 1000:6.1f} ms before/after "
        f"({floor_statements / n:4.1f} SQL) | ratio "
        f"{ext['seconds'] / floor_seconds:4.2f}x"
    )


def child(args) -> None:
    database_url = None
    server = None
    sys.path.insert(0, str(ROOT / "tests"))  # lnbits_sandbox, pg_server
    if args.db == "postgres":
        from pg_server import start_postgres

        server = start_postgres()
        server.create_database("bench")
        database_url = server.dsn("bench")
    _prepare_environment(database_url)
    try:
        if args.pages:
            result = asyncio.run(run_pages(args.payouts))
        else:
            result = asyncio.run(run_size(int(args.n)))
        print("RESULT " + json.dumps(result), flush=True)
    finally:
        if server is not None:
            server.stop()


def _run_child(backend: str, *args: str) -> dict | None:
    """A fresh process (LNbits fixes its database at import) and database."""
    log = Path(tempfile.mkstemp(prefix=f"bench-{backend}-", suffix=".log")[1])
    with log.open("w") as log_file:
        process = subprocess.run(
            [sys.executable, __file__, "--child", "--db", backend, *args],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    if os.environ.get("BENCH_TRACE"):
        print(f"   (statements traced in {log})", flush=True)
    for line in process.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    print(f"{backend} {' '.join(args)}: exit {process.returncode}, log in {log}")
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", default="10,100,1000,5000")
    parser.add_argument("--db", default="both", choices=["sqlite", "postgres", "both"])
    parser.add_argument("--payouts", type=int, default=100_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pages", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    backends = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    for backend in backends:
        print(f"== {backend}", flush=True)
        for n in filter(None, args.n.split(",")):  # --n "": the pages only
            result = _run_child(backend, "--n", n)
            if result:
                print(_row(backend, result), flush=True)
        if args.payouts:
            pages = _run_child(backend, "--pages", "--payouts", str(args.payouts))
            if pages:
                print(
                    f"{backend} pages with {pages['clients']} clients and "
                    f"{pages['payouts']} payouts (median of 5):",
                    flush=True,
                )
                for label, ms in pages["ms"].items():
                    print(f"   {label:22} {ms:7.1f} ms", flush=True)


if __name__ == "__main__":
    main()
