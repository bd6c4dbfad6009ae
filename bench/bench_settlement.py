"""Benchmark: one settlement split among N clients, beside LNbits' bare payment
loop and beside the peer extension lnbits/splitpayments.

    .venv/bin/python bench/bench_settlement.py [--n 10,100,1000]
        [--db sqlite|postgres|both] [--rounds 2] [--payouts 100000]

Each N runs in its own process on a fresh database (LNbits fixes its database
at import): a real LNbits app in-process, FakeWallet, a temp data folder or a
throwaway PostgreSQL server, with this extension and splitpayments installed
side by side. Everything is set up first; then three columns are timed, each
paying the same N client wallets, in alternating order, `--rounds` times:

    floor, product, peer, peer, product, floor

* floor: N bare internal payments, `create_invoice(internal=True)` +
  `pay_invoice`, from a funded wallet: LNbits' naive payment loop.
* product: one ATM settlement of N x 525 sats paid into the source wallet,
  timed until the processor lets go of it: listener, lookup, plan, N payouts
  of 500 sats and the commission (N x 25 sats to the commission wallet).
* peer: lnbits/splitpayments with the N wallets as targets (100/N % each) and
  its own source wallet, paid N x 500 sats; timed until the N-th split payment
  has reached its target.

No tracemalloc while timing: peak Python memory is measured in a separate,
untimed settlement at the end. Reported per column: the median time per
payment with its spread (min-max over the 2 x rounds runs), SQL statements per
payment (every statement any of the databases runs, counted with a SQLAlchemy
cursor event on every engine), and the ratios of the medians.

The peer comes from its public repository at a pinned commit, checked out from
a local git mirror into the bench's own temp folder (`SATMACHINE_BENCH_PEER`:
a git directory or a plain folder; default: the `fetch` mirror below). Without
it the bench says so and prints the other columns. Nothing is downloaded.

Prints figures; asserts nothing. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import tracemalloc
from collections import Counter
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RATE = "1000000"  # GTQ per BTC: 100 sats per GTQ
PEER_COMMIT = "4e2ebb7944935129db1a988102482e35738642f8"  # 2025-02-26
PEER_DEFAULT = "/work/.mirror/lnbits+splitpayments/repo"
COLUMNS = ("floor", "product", "peer")


def _install_peer(run_dir: Path) -> str | None:
    """splitpayments at PEER_COMMIT into run_dir/extensions. Returns None, or
    why the peer is not available."""
    source = Path(os.environ.get("SATMACHINE_BENCH_PEER", PEER_DEFAULT))
    target = run_dir / "extensions" / "splitpayments"
    if not source.exists():
        return f"no peer at {source} (set SATMACHINE_BENCH_PEER)"
    if (source / "config.json").exists() and not (source / "HEAD").exists():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(".git"))
        return None
    git_dir = source / ".git" if (source / ".git").exists() else source
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", f"--git-dir={git_dir}", "archive", "--format=tar", PEER_COMMIT],
        capture_output=True,
    )
    if archive.returncode != 0:
        shutil.rmtree(target)
        return f"commit {PEER_COMMIT[:7]} not in {git_dir}: {archive.stderr[:200]!r}"
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return None


def _prepare_environment(database_url: str | None) -> tuple[Path, str | None]:
    from lnbits_sandbox import offline_settings, prepare_run_dir

    run_dir = prepare_run_dir(Path(tempfile.mkdtemp(prefix="satmachine-bench-")))
    peer_missing = _install_peer(run_dir)
    os.environ.update(offline_settings(run_dir))
    if database_url:
        os.environ["LNBITS_DATABASE_URL"] = database_url
    else:
        os.environ.pop("LNBITS_DATABASE_URL", None)
    os.chdir(run_dir)
    return run_dir, peer_missing


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

    async def clients(self, n: int, tag: str, deposit: Decimal) -> list:
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
                    amount=deposit,
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


async def _quiet(timeout: float = 3600) -> None:
    """Until every payment is handled everywhere: LNbits' invoice queues and
    every listener's queue (this extension's, the peer's, the bench's) empty,
    this extension's listener holding no payment, the money lock free, twice
    in a row. Each column starts from quiet and is timed until quiet again,
    so no column is charged for the notifications another left behind (a
    listener's queue is first in, first out: 1000 notifications of the floor
    still queued would be handled before the product's settlement)."""
    from lnbits_sandbox import payments_in_flight as busy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.002)
        if not busy():
            await asyncio.sleep(0.02)
            if not busy():
                return
    raise RuntimeError("LNbits never became quiet")


class Product:
    """This extension: a source wallet, a commission wallet, the payer (the
    ATM's side) and one settlement per run."""

    def __init__(self, bench: Bench, counter: StatementCounter, n: int) -> None:
        self.bench, self.counter, self.n = bench, counter, n
        self.runs = 0

    async def prepare(self, settlements: int) -> None:
        bench, n = self.bench, self.n
        self.source = await bench.wallet(f"source-{n}")
        self.commission = await bench.wallet(f"commission-{n}")
        self.payer = await bench.wallet(f"payer-{n}")
        response = await bench.api(
            "POST",
            "/config",
            json={
                "source_wallet_id": self.source.id,
                "commission_wallet_id": self.commission.id,
            },
        )
        assert response.status_code == 201, response.text
        # Each settlement takes 5.00 GTQ of every client's deposit.
        self.wallets = await bench.clients(n, f"c{n}", Decimal(5 * settlements))
        await bench.fund(self.payer.id, settlements * n * 525)

    async def _invoice(self):
        from lnbits.core.services import create_invoice

        self.runs += 1
        principal, fee = self.n * 500, self.n * 25
        return await create_invoice(
            wallet_id=self.source.id,
            amount=principal + fee,
            memo="ATM",
            extra={
                "source": "bitspire",
                "principal_sats": principal,
                "fee_sats": fee,
                "exchange_rate": RATE,
                "currency": "GTQ",
                "txid": f"bench-{self.n}-{self.runs}",
            },
        )

    async def run(self, memory: bool = False) -> dict:
        from lnbits.core.services import pay_invoice
        from lnbits.utils.cache import cache
        from satmachineadmin import crud

        # The market agrees with the ATM's price (rate_check.py); offline, the
        # exchange-rate cache is the market.
        cache.set("btc-price-GTQ", float(RATE), expiry=24 * 3600)
        from satmachineadmin.tasks import listener_status

        invoice = await self._invoice()
        recorded_before = listener_status["last_payment_at"]
        if memory:
            tracemalloc.start()
        statements = self.counter.count
        started = time.perf_counter()
        await pay_invoice(wallet_id=self.payer.id, payment_request=invoice.bolt11)
        await _wait_processed(recorded_before)
        await _quiet()
        seconds = time.perf_counter() - started
        statements = self.counter.count - statements
        peak = tracemalloc.get_traced_memory()[1] if memory else 0
        tracemalloc.stop()
        settlement = await crud.get_settlement_by_hash(invoice.payment_hash)
        if settlement and settlement.status != "completed":
            # Why, in words: a failed payout's own error, counted.
            errors = await crud.db.fetchall(
                "SELECT error, COUNT(*) AS n FROM satoshimachine.dca_payments "
                "WHERE settlement_id = :id AND status <> 'confirmed' GROUP BY error",
                {"id": settlement.id},
            )
            print(f"settlement {settlement.status}: {errors}", file=sys.stderr)
        assert settlement and settlement.status == "completed", settlement
        assert settlement.distributed_sats == self.n * 500, settlement
        assert settlement.commission_status == "confirmed", settlement
        return {"seconds": seconds, "statements": statements, "peak_mb": peak / 2**20}


class Floor:
    """LNbits' naive loop: create_invoice + pay_invoice per target."""

    def __init__(self, bench: Bench, counter: StatementCounter, wallets) -> None:
        self.bench, self.counter, self.wallets = bench, counter, wallets
        self.sources: list = []

    async def prepare(self, runs: int) -> None:
        for i in range(runs):
            source = await self.bench.wallet(f"floor-source-{i}")
            await self.bench.fund(source.id, len(self.wallets) * 500)
            self.sources.append(source)

    async def run(self) -> dict:
        from lnbits.core.services import create_invoice, pay_invoice

        source = self.sources.pop(0)
        statements = self.counter.count
        started = time.perf_counter()
        for wallet in self.wallets:
            invoice = await create_invoice(
                wallet_id=wallet.id, amount=500, memo="DCA", internal=True
            )
            await pay_invoice(wallet_id=source.id, payment_request=invoice.bolt11)
        await _quiet()
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "statements": self.counter.count - statements}


def _below_float32(value: float) -> float:
    """The largest 4-byte float not above `value` (PostgreSQL keeps the peer's
    REAL percentages in 4 bytes; rounded up, N of them add up to more than 100
    and the peer refuses to split at all)."""
    (as_float32,) = struct.unpack("f", struct.pack("f", value))
    if as_float32 > value:
        (bits,) = struct.unpack("I", struct.pack("f", as_float32))
        (as_float32,) = struct.unpack("f", struct.pack("I", bits - 1))
    return as_float32


class Peer:
    """lnbits/splitpayments: its own source wallet, the same N target wallets at
    100/N % each. It pays every target from a background task; the run ends
    when the N-th split payment has reached its target."""

    def __init__(self, bench: Bench, counter: StatementCounter, wallets) -> None:
        self.bench, self.counter, self.wallets = bench, counter, wallets
        self.targets = {w.id for w in wallets}
        self.arrived = 0
        self.arrived_sats = 0
        self.done = asyncio.Event()

    async def _on_paid(self, payment) -> None:
        if payment.wallet_id in self.targets and (payment.memo or "").startswith(
            "Split payment:"
        ):
            self.arrived += 1
            self.arrived_sats += payment.amount // 1000
            if self.arrived >= self.expected:
                self.done.set()

    async def prepare(self, runs: int) -> None:
        from lnbits.helpers import urlsafe_short_hash
        from lnbits.task_manager import task_manager
        from splitpayments.crud import set_targets  # type: ignore[import-not-found]
        from splitpayments.models import Target  # type: ignore[import-not-found]

        n = len(self.wallets)
        self.source = await self.bench.wallet(f"peer-source-{n}")
        self.payer = await self.bench.wallet(f"peer-payer-{n}")
        await self.bench.fund(self.payer.id, runs * n * 500)
        percent = _below_float32(100 / n)
        while sum([percent] * n) > 100:
            percent = _below_float32(percent * (1 - 1e-7))
        await set_targets(
            self.source.id,
            [
                Target(
                    id=urlsafe_short_hash(),
                    wallet=w.id,
                    source=self.source.id,
                    percent=percent,
                    alias=f"t{i}",
                )
                for i, w in enumerate(self.wallets)
            ],
        )
        task_manager.register_invoice_listener(self._on_paid, "bench_peer_watch")

    async def run(self) -> dict:
        from lnbits.core.services import create_invoice, pay_invoice

        n = len(self.wallets)
        invoice = await create_invoice(
            wallet_id=self.source.id, amount=n * 500, memo="ATM (peer)"
        )
        self.arrived = self.arrived_sats = 0
        self.expected = n
        self.done.clear()
        statements = self.counter.count
        started = time.perf_counter()
        await pay_invoice(wallet_id=self.payer.id, payment_request=invoice.bolt11)
        await asyncio.wait_for(self.done.wait(), timeout=3600)
        await _quiet()
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "statements": self.counter.count - statements,
            "paid_sats": self.arrived_sats,
            "owed_sats": n * 500,
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

            databases = [core_db, ext_db]
            try:
                from splitpayments.crud import (  # type: ignore[import-not-found]
                    db as peer_db,
                )

                databases.append(peer_db)
            except ImportError:
                pass  # no peer in this run
            counter = StatementCounter(
                {id(d.engine): d.engine for d in databases}.values()
            )
            yield Bench(http, token, settings.super_user), counter


async def run_size(n: int, rounds: int, peer_missing: str | None) -> dict:
    """One N on a fresh database. Everything is set up first, then `rounds`
    times: floor, product, peer, peer, product, floor. Then, untimed, one more
    settlement under tracemalloc for its peak memory."""
    async with lnbits_app() as (bench, counter):
        product = Product(bench, counter, n)
        await product.prepare(settlements=2 * rounds + 1)
        # Every column pays the same wallets, in the same database.
        floor = Floor(bench, counter, product.wallets)
        await floor.prepare(2 * rounds)
        peer = None if peer_missing else Peer(bench, counter, product.wallets)
        if peer:
            await peer.prepare(2 * rounds)
        runs: dict[str, list[dict]] = {c: [] for c in COLUMNS}
        order = ["floor", "product", "peer", "peer", "product", "floor"]
        await _quiet()  # the setup's own payments handled first
        only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
        for _ in range(rounds):
            for column in order:
                if only and column not in only:
                    continue  # BENCH_ONLY=product: one column (for a profiler)
                if column == "floor":
                    runs["floor"].append(await floor.run())
                elif column == "product":
                    counter.trace.clear()
                    runs["product"].append(await product.run())
                    for statement, times in counter.trace.most_common(40):
                        print(f"TRACE {times:6} {statement}", file=sys.stderr)
                elif peer:
                    runs["peer"].append(await peer.run())
                await _quiet()  # the next column starts from quiet
        try:
            memory = await product.run(memory=True)
        except AssertionError as exc:  # the timings above still stand
            print(f"memory pass: {exc}", file=sys.stderr)
            memory = {"peak_mb": float("nan")}
    return {
        "n": n,
        "runs": runs,
        "peak_mb": memory["peak_mb"],
        "peer_missing": peer_missing,
    }


async def run_pages(payouts: int) -> dict:
    async with lnbits_app() as (bench, _):
        await bench.clients(5000, "pages", Decimal("10.00"))
        return await bench_pages(bench, payouts)


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):6.1f} " f"({min(values):.1f}-{max(values):.1f})"


def summarize(result: dict) -> dict:
    """Median and spread, per payment, of each column; ratios of medians."""
    n = result["n"]
    summary: dict = {"n": n, "peak_mb": result["peak_mb"]}
    for column in COLUMNS:
        runs = result["runs"][column]
        ms = [r["seconds"] / n * 1000 for r in runs]
        summary[column] = {
            "ms": ms,
            "median_ms": statistics.median(ms) if ms else None,
            "sql": (
                statistics.median([r["statements"] / n for r in runs]) if runs else None
            ),
        }
    product = summary["product"]["median_ms"]
    for column in ("floor", "peer"):
        other = summary[column]["median_ms"]
        summary[f"vs_{column}"] = product / other if product and other else None
    peer_runs = result["runs"]["peer"]
    if peer_runs:
        summary["peer_lost_sats"] = statistics.median(
            r["owed_sats"] - r["paid_sats"] for r in peer_runs
        )
    return summary


def _row(label: str, result: dict) -> str:
    s = summarize(result)
    parts = [f"{label:8} N={s['n']:<5}"]
    for column in COLUMNS:
        c = s[column]
        if c["median_ms"] is None:
            parts.append(f"{column}: not run")
            continue
        parts.append(f"{column} {_spread(c['ms'])} ms/payment, {c['sql']:4.1f} SQL")
    ratios = f"product/floor {s['vs_floor']:.2f}x"
    if s["vs_peer"]:
        ratios += f", product/peer {s['vs_peer']:.2f}x"
        ratios += f", peer left {s['peer_lost_sats']:.0f} sats unpaid"
    parts.append(ratios)
    parts.append(f"product peak {s['peak_mb']:.1f} MB (separate pass)")
    text = " | ".join(parts)
    if result.get("peer_missing"):
        text += f"\n         peer not available: {result['peer_missing']}"
    return text


def child(args) -> None:
    database_url = None
    server = None
    sys.path.insert(0, str(ROOT / "tests"))  # lnbits_sandbox, pg_server
    run_dir = None
    code = 1
    # Stopped from outside (kill PID): still stop the PostgreSQL server and
    # remove the temp folder (LNbits leaves SIGINT to its own handling).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.db == "postgres":
            from pg_server import start_postgres

            # Commits as a production server makes them (fsync on): the tests'
            # server skips fsync, which would hide what a commit costs.
            server = start_postgres(durable=True)
            server.create_database("bench")
            database_url = server.dsn("bench")
        run_dir, peer_missing = _prepare_environment(database_url)
        if args.pages:
            result = asyncio.run(run_pages(args.payouts))
        else:
            result = asyncio.run(run_size(int(args.n), args.rounds, peer_missing))
        print("RESULT " + json.dumps(result), flush=True)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        if server is not None:
            server.stop()
        if run_dir is not None:
            os.chdir("/")
            shutil.rmtree(run_dir, ignore_errors=True)
        sys.stdout.flush()
        sys.stderr.flush()
        # LNbits never closes its aiosqlite worker threads: a normal exit can
        # wait for them forever. Everything is written and cleaned up by now.
        os._exit(code)


def _run_child(backend: str, *args: str) -> dict | None:
    """A fresh process (LNbits fixes its database at import) and database."""
    fd, name = tempfile.mkstemp(prefix=f"bench-{backend}-", suffix=".log")
    os.close(fd)
    log = Path(name)
    with log.open("w") as log_file:
        process = subprocess.run(
            [sys.executable, __file__, "--child", "--db", backend, *args],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    for line in process.stdout.splitlines():
        if line.startswith("RESULT "):
            if os.environ.get("BENCH_TRACE"):
                print(f"   (statements traced in {log})", flush=True)
            else:
                log.unlink()
            return json.loads(line[len("RESULT ") :])
    print(f"{backend} {' '.join(args)}: exit {process.returncode}, log in {log}")
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", default="10,100,1000")
    parser.add_argument("--db", default="both", choices=["sqlite", "postgres", "both"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--payouts", type=int, default=100_000)
    parser.add_argument("--json", help="also write every run's figures here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pages", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    backends = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    collected = []
    for backend in backends:
        print(
            f"== {backend} ({args.rounds} rounds: floor, product, peer, peer, "
            "product, floor; median (min-max) per payment)",
            flush=True,
        )
        for n in filter(None, args.n.split(",")):  # --n "": the pages only
            result = _run_child(backend, "--n", n, "--rounds", str(args.rounds))
            if result:
                print(_row(backend, result), flush=True)
                collected.append({"db": backend, **result})
                if args.json:
                    Path(args.json).write_text(json.dumps(collected, indent=1))
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
