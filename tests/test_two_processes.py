"""Two real LNbits processes on one PostgreSQL database (fail-over, a second
worker): both process the same settlements, and everyone is paid exactly once.

Each process has its own port and data folder and the same
LNBITS_DATABASE_URL. ATM settlements arrive through both; each process's
invoice listener only sees the payments made through it, but the recovery pass
(`POST /manual-poll`: scan, process open settlements, resume resolutions) of
each sees every payment in the database, and so do settlement retries: while
the settlements arrive, both processes are hammered with both from threads.
The total cash is more than the clients hold, so the caps and orphans depend on
which settlement is split first: two splits at once would spend the same
balances twice. The money lock (locks.py: a PostgreSQL advisory lock) keeps
the two processes from working at once.

Afterwards: every settlement completed, each split adds up, every client's
wallet holds exactly its confirmed payouts (each paid once), no balance below
0.00, not a sat created or lost, and no sign of double work: no invoice of the
extension abandoned or left unpaid, every payout paid at its first attempt.
The lock was seen contended across the processes (a waiter in pg_locks), so
the two really raced.

A variant SIGKILLs one process at a crash point (faults.py) in the middle of
the race; the other one finishes the job alone.

Tried by hand with money_lock() skipping the advisory lock: every run failed.
The compare-and-set guards keep most double work from paying twice (a second
run's invoice is abandoned, which the "no failed invoice" check catches), but
not all of it: a commission was paid twice (its stored invoice was not a
compare-and-set then; it is now, machines.set_commission_invoice) and a
completed settlement kept commission_status "pending" (a whole-row write from
a stale read). The advisory lock is what makes two processes safe; the guards
are the second line.

PostgreSQL only: on SQLite LNbits keeps one process per data folder.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import count

import httpx
import pytest
from live_server import PREFIX, LiveLNbits

pytestmark = pytest.mark.skipif(
    os.environ.get("SATMACHINE_TEST_DB") != "postgres",
    reason="two LNbits processes can share a database only on PostgreSQL "
    "(run with SATMACHINE_TEST_DB=postgres)",
)

CLIENTS = 10
SETTLEMENTS = 8
SATS_PER_GTQ = 100  # at 1,000,000 GTQ/BTC
RACE_SECONDS = 60
# Confirmed deposits 342.65 GTQ in all; the settlements bring 470.00 GTQ.
DEPOSITS = [Decimal("20.00") + Decimal("3.17") * i for i in range(CLIENTS)]
PRINCIPALS = [5_000 + 250 * i for i in range(SETTLEMENTS)]
FEES = [150 + 7 * i for i in range(SETTLEMENTS)]

DATABASE = "two_processes"
_names = count()
_races = count()


@dataclass
class World:
    a: LiveLNbits
    b: LiveLNbits
    wallets: dict[str, dict]
    # This test's clients: (client, wallet, deposit). Earlier tests' clients
    # are deactivated first, so the balances in play are these only.
    clients: list[tuple[dict, dict, Decimal]] = field(default_factory=list)
    a_crash_at: str | None = None  # what A was started with

    @property
    def everyone(self) -> list[dict]:
        return list(self.wallets.values()) + [w for _, w, _ in self.clients]


@dataclass
class Race:
    hashes: list[str]
    unexpected: list[str] = field(default_factory=list)
    responses: Counter = field(default_factory=Counter)
    lock_waiters: int = 0  # most processes seen waiting for the advisory lock


def _pg():
    import conftest  # the session's PostgreSQL server

    assert conftest._pg is not None
    return conftest._pg


def _sql(query: str) -> list[list[str]]:
    out = _pg().psql(query, database=DATABASE)
    return [line.split("|") for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def pair():
    """Two processes on one database, the wallets and the config; set up
    through A. B starts on the set-up database (it reads the super user at
    start) and logs in on its own: the token key lives in each data folder."""
    _pg().create_database(DATABASE)
    dsn = _pg().dsn(DATABASE)
    a, b = LiveLNbits(dsn), LiveLNbits(dsn)
    for live in (a, b):  # the market agrees with the ATM's price
        live.market("GTQ", 1_000_000)
    try:
        a.start()
        a.first_install()
        b.start()
        b.login()
        wallets = {
            "source": a.create_wallet("Source"),
            "commission": a.create_wallet("Commission"),
            "payer_a": a.create_wallet("ATM payer via A"),
            "payer_b": a.create_wallet("ATM payer via B"),
        }
        for payer in ("payer_a", "payer_b"):
            a.credit(wallets[payer]["id"], 10_000_000)
        response = a.api(
            "POST",
            "/config",
            json={
                "source_wallet_id": wallets["source"]["id"],
                "commission_wallet_id": wallets["commission"]["id"],
            },
        )
        assert response.status_code == 201, response.text
        yield World(a, b, wallets)
    finally:
        a.close()
        b.close()


def _prepare(world: World, crash_a: str | None = None) -> World:
    """A (re)started as this test needs it, and ten fresh clients with
    confirmed deposits, the only active ones."""
    if not _alive(world.a) or world.a_crash_at != crash_a:
        world.a.stop()
        world.a.start(**({"SATMACHINE_CRASH_AT": crash_a} if crash_a else {}))
        world.a.login()
        world.a_crash_at = crash_a
    assert _alive(world.b), world.b.log_tail()
    a = world.a
    response = a.api("GET", "/clients", params={"limit": 1000})
    assert response.status_code == 200, response.text
    for client in response.json():
        if client["status"] == "active":
            response = a.api(
                "PUT", f"/clients/{client['id']}/status", json={"status": "inactive"}
            )
            assert response.status_code == 200, response.text

    def new_client(i: int) -> tuple[dict, dict, Decimal]:
        name = f"client{next(_names):03d}"
        wallet = a.create_user_wallet(name)
        response = a.api(
            "POST", "/clients", json={"wallet_id": wallet["id"], "username": name}
        )
        assert response.status_code == 201, response.text
        client = response.json()
        response = a.api(
            "POST",
            "/deposits",
            json={"client_id": client["id"], "amount": str(DEPOSITS[i])},
        )
        assert response.status_code == 201, response.text
        response = a.api(
            "PUT",
            f"/deposits/{response.json()['id']}/status",
            json={"status": "confirmed"},
        )
        assert response.status_code == 200, response.text
        return client, wallet, DEPOSITS[i]

    with ThreadPoolExecutor(3) as pool:
        world.clients = list(pool.map(new_client, range(CLIENTS)))
    return world


def _alive(server: LiveLNbits) -> bool:
    return server.process is not None and server.process.poll() is None


def _died(server: LiveLNbits) -> bool:
    """A refused or cut request: did the server die (its crash point)?"""
    return server.wait_exit(10) is not None


def _client(server: LiveLNbits) -> httpx.Client:
    # One client per thread; a request may wait for the lock a while.
    return httpx.Client(base_url=server.url, headers=server.auth, timeout=60)


def _extra(race: int, i: int) -> dict:
    return {
        "source": "bitspire",
        "principal_sats": PRINCIPALS[i],
        "fee_sats": FEES[i],
        "exchange_rate": "1000000",
        "currency": "GTQ",
        "txid": f"two-processes-{race}-{i}",
    }


def _open_settlements(http: httpx.Client) -> list[dict]:
    response = http.get(f"{PREFIX}/settlements", params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _race(world: World, pay_through: list[LiveLNbits]) -> Race:
    """Invoices on the source wallet, paid through `pay_through` (round robin,
    one thread per process), while both processes run recovery passes and
    settlement retries from threads. Returns when every settlement is
    completed, or RACE_SECONDS are up."""
    number = next(_races)
    invoices = [
        world.a.invoice(
            world.wallets["source"], PRINCIPALS[i] + FEES[i], extra=_extra(number, i)
        )
        for i in range(SETTLEMENTS)
    ]
    race = Race([invoice["payment_hash"] for invoice in invoices])
    ours = ", ".join(f"'{h}'" for h in race.hashes)
    stop = threading.Event()
    guard = threading.Lock()

    def note(server: LiveLNbits, what: str, response: httpx.Response) -> None:
        with guard:
            race.responses[(what, response.status_code)] += 1
            if response.status_code not in (200, 409):
                race.unexpected.append(
                    f"{what} via {server.port}: {response.status_code} "
                    f"{response.text[:300]}"
                )

    def pay(server: LiveLNbits, payer: dict, bolt11s: list[str]) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for bolt11 in bolt11s:
                response = http.post(
                    "/api/v1/payments",
                    json={"out": True, "bolt11": bolt11},
                    headers={"X-Api-Key": payer["adminkey"]},
                )
                assert response.status_code in (200, 201), response.text
                time.sleep(0.05)

    def manual_poll(server: LiveLNbits) -> None:
        with _client(server) as http:
            while not stop.is_set() and _alive(server):
                try:
                    note(server, "poll", http.post(f"{PREFIX}/manual-poll"))
                except httpx.TransportError:
                    if not _died(server):
                        raise

    def retry(server: LiveLNbits) -> None:
        with _client(server) as http:
            while not stop.is_set() and _alive(server):
                try:
                    for settlement in _open_settlements(http):
                        if settlement["status"] == "completed":
                            continue
                        path = f"{PREFIX}/settlements/{settlement['id']}/retry"
                        note(server, "retry", http.post(path))
                    time.sleep(0.02)
                except httpx.TransportError:
                    if not _died(server):
                        raise

    failures: list[BaseException] = []

    def guarded(fn, *args):
        def run():
            try:
                fn(*args)
            except BaseException as exc:
                failures.append(exc)

        return threading.Thread(target=run, daemon=True)

    hammers = [
        guarded(work, server)
        for server in (world.a, world.b)
        for work in (manual_poll, retry)
    ]
    payers = [
        guarded(
            pay,
            server,
            world.wallets["payer_a" if server is world.a else "payer_b"],
            [inv["bolt11"] for inv in invoices[k :: len(pay_through)]],
        )
        for k, server in enumerate(pay_through)
    ]
    for thread in hammers + payers:
        thread.start()

    alive = [s for s in (world.a, world.b) if _alive(s)]
    deadline = time.monotonic() + RACE_SECONDS
    while time.monotonic() < deadline and not failures:
        waiting = _sql(
            "SELECT count(*) FROM pg_locks "
            "WHERE locktype = 'advisory' AND NOT granted",
        )
        race.lock_waiters = max(race.lock_waiters, int(waiting[0][0]))
        alive = [s for s in (world.a, world.b) if _alive(s)]
        done = _sql(
            "SELECT count(*) FROM satoshimachine.settlements "
            f"WHERE status = 'completed' AND payment_hash IN ({ours})"
        )
        if int(done[0][0]) == SETTLEMENTS and not any(t.is_alive() for t in payers):
            break
        time.sleep(0.1)
    stop.set()
    for thread in hammers + payers:
        thread.join(90)
    assert not failures, failures
    # One more pass on each survivor, one at a time: nothing may be left over.
    for server in alive:
        if _alive(server):
            response = server.api("POST", "/manual-poll")
            assert response.status_code == 200, response.text
    return race


def _check_everyone_paid_once(
    world: World,
    race: Race,
    server: LiveLNbits,
    before: list[int],
    one_died: bool = False,
) -> None:
    assert not race.unexpected, race.unexpected
    settlements = []
    for payment_hash in race.hashes:
        response = server.api("GET", "/settlements", params={"search": payment_hash})
        assert response.status_code == 200, response.text
        [row] = [
            s for s in response.json()["data"] if s["payment_hash"] == payment_hash
        ]
        response = server.api("GET", f"/settlements/{row['id']}")
        assert response.status_code == 200, response.text
        settlements.append(response.json())
    assert [s["status"] for s in settlements] == ["completed"] * SETTLEMENTS, [
        (s["status"], s["status_detail"]) for s in settlements
    ]

    received: Counter = Counter()  # sats per client wallet, by its payouts
    fiat: Counter = Counter()
    payout_count: Counter = Counter()
    for i, s in enumerate(settlements):
        payouts = s["payouts"]
        assert s["amount_sats"] == PRINCIPALS[i] + FEES[i]
        assert s["commission_sats"] == FEES[i]
        assert s["commission_status"] == "confirmed", s["commission_error"]
        assert all(p["status"] == "confirmed" for p in payouts), payouts
        assert len({p["client_id"] for p in payouts}) == len(payouts)
        paid = sum(p["amount_sats"] for p in payouts)
        assert paid == (s["distributed_sats"] or 0)
        assert (
            paid + s["commission_sats"] + (s["orphan_sats"] or 0) == s["amount_sats"]
        ), s
        paid_fiat = sum((Decimal(str(p["amount_fiat"])) for p in payouts), Decimal(0))
        assert paid_fiat + Decimal(str(s["orphan_fiat"] or 0)) == Decimal(
            str(s["fiat_amount"])
        ), s
        for p in payouts:
            received[p["wallet_id"]] += p["amount_sats"]
            fiat[p["client_id"]] += Decimal(str(p["amount_fiat"]))
            payout_count[p["wallet_id"]] += 1
    orphans = sum(s["orphan_sats"] or 0 for s in settlements)
    commissions = sum(s["commission_sats"] for s in settlements)
    total = sum(s["amount_sats"] for s in settlements)
    # More cash than balances: the last settlements are (partly) orphans.
    assert orphans > 0

    after = [server.balance(w) for w in world.everyone]
    delta = {
        w["id"]: new - old
        for w, new, old in zip(world.everyone, after, before, strict=True)
    }
    assert sum(delta.values()) == 0, delta  # nothing created or lost
    w = world.wallets
    assert delta[w["payer_a"]["id"]] + delta[w["payer_b"]["id"]] == -total
    assert delta[w["source"]["id"]] == orphans
    assert delta[w["commission"]["id"]] == commissions
    for client, wallet, deposit in world.clients:
        # Exactly its payouts, each once; never more than its deposit is worth.
        assert delta[wallet["id"]] == received[wallet["id"]], client["username"]
        assert received[wallet["id"]] <= deposit * SATS_PER_GTQ
        response = server.api("GET", f"/clients/{client['id']}/balance")
        assert response.status_code == 200, response.text
        balance = response.json()
        assert Decimal(str(balance["remaining_balance"])) >= 0, balance
        assert Decimal(str(balance["total_payments"])) == fiat[client["id"]], balance
        assert Decimal(str(balance["total_deposits"])) == deposit, balance
        assert balance["total_sats"] == received[wallet["id"]], balance
    # Every sat the clients could take was taken: the balances are used up.
    assert sum(fiat.values()) == sum(DEPOSITS), fiat

    # No double work. With the lock held across processes, nobody ever meets
    # another run's invoice: every payout and commission is paid by one
    # invoice, at the first attempt; none is left payable. None is abandoned
    # either, unless a process died with invoices stored and not yet paid:
    # the survivor never pays those (a stored invoice waiting for a retry is
    # made unpayable and replaced), so they are failed.
    ids = ", ".join(f"'{s['id']}'" for s in settlements)
    extension = _sql(
        "SELECT wallet_id, status, count(*) FROM apipayments "
        'WHERE amount > 0 AND extra LIKE \'%"tag": "satmachineadmin"%\' '
        'AND substring(extra from \'"settlement_id": "([^"]+)"\') '
        f"IN ({ids}) GROUP BY wallet_id, status"
    )
    not_paid = [row for row in extension if row[1] != "success"]
    if one_died:
        assert all(row[1] == "failed" for row in not_paid), not_paid
    else:
        assert not not_paid, f"abandoned or unpaid extension invoices: {not_paid}"
    invoices = {row[0]: int(row[2]) for row in extension if row[1] == "success"}
    for _, wallet, _ in world.clients:
        assert invoices.get(wallet["id"], 0) == payout_count[wallet["id"]]
    assert invoices[w["commission"]["id"]] == SETTLEMENTS
    attempts = _sql(
        "SELECT attempts, count(*) FROM satoshimachine.dca_payments "
        f"WHERE settlement_id IN ({ids}) GROUP BY attempts"
    )
    assert attempts == [["1", str(sum(payout_count.values()))]], attempts


def test_two_processes_race_pays_everyone_once(pair):
    world = _prepare(pair)
    before = [world.a.balance(w) for w in world.everyone]
    race = _race(world, pay_through=[world.a, world.b])
    _check_everyone_paid_once(world, race, world.a, before)
    # Both processes really worked at the same time: one waited for the other.
    assert race.lock_waiters >= 1, race.responses


@pytest.mark.parametrize("crash_at", ["planned:2", "payout_paid:3"])
def test_one_process_killed_mid_race_the_other_finishes(pair, crash_at):
    """A dies at a crash point while both race (PostgreSQL releases the
    advisory lock with its session); B alone finishes every settlement. The
    ATM pays through B, so A never dies inside an LNbits payment of its own."""
    world = _prepare(pair, crash_a=crash_at)
    before = [world.a.balance(w) for w in world.everyone]
    race = _race(world, pay_through=[world.b])
    # B may take every settlement before A reaches its crash point (a race):
    # then A simply lives on; the money must add up either way.
    world.a.wait_exit(30)
    assert _alive(world.b)
    _check_everyone_paid_once(world, race, world.b, before, one_died=True)
