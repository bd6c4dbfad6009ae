"""The ledger that checks itself (issue 17): a simulation of the real extension
in the in-process LNbits (FakeWallet, real internal payments), used by
tests/test_simulation.py.

A scenario is a list of *steps* (the frozen dataclasses below), each one thing
that happens in production: a client registers (through the API, or as the
client extension does, by a direct INSERT with whatever strings it likes), a
deposit is recorded / confirmed / edited / cancelled, an ATM settlement arrives
(bitSpire metadata, or none and the operator types the cash-out in later), a
duplicate notification, recovery passes (one, or two at once), retries, orphan
resolutions, the source wallet running dry and being topped up, a payout
cancelled, a client deleting their wallet and getting a new one...

`Sim.apply(step)` carries a step out against the running LNbits and then checks
every invariant (`Sim.check`); `Sim.finish()` is the operator's clean-up at the
end of a run (top up, new wallets, recovery, retries) followed by the "nothing
is reserved forever" checks. Steps refer to clients, deposits, settlements,
orphans and payouts by index, taken modulo what exists when the step runs (a
step with nothing to act on is skipped), so any list of steps is a valid
scenario and hypothesis can delete steps freely while shrinking.

Invariants, checked after every step (`Sim.check`), from the database, the
wallets' payments and the API:

* no sat created or lost: the run's wallets hold exactly what env.fund minted
  into them; a deleted wallet's sats stay frozen (sats paid into one are lost
  to its owner); the sink holds exactly what was drained;
* every ATM payment is one settlement, and nothing else is;
* per split settlement (distributing / completed / payout_failed): its
  non-cancelled payouts + commission + orphan == its sats (and the same in
  fiat), its orphan equals its reconciliation's, a completed one has nothing
  unpaid, and its payout rows never change after the split;
* the split follows the rules: when a settlement is split, its payouts equal
  `allocation.distribute` over the balances the model expects (exactly the
  active 'flow' clients, deposits in the currency confirmed before the
  payment, less what is paid or reserved);
* no payout paid twice: each confirmed payout is exactly one settled
  payment of its sats into one of its client's wallets, every other payout
  none; each client's wallets hold exactly its confirmed payouts plus the
  orphans sent to them; the commission wallet exactly the confirmed
  commissions, each paid once;
* every orphan resolved at most once: a sent orphan reached its (last)
  target once, an attribution has one deposit and one payout, and a
  resolved orphan never changes again;
* balances: what the operator sees (remaining + reserved, per currency, and
  GET /clients/{id}/balance for single-currency clients) equals the client
  extension's formula; never below 0.00 or above the deposits; reserved is
  exactly the unfinished payouts' fiat;
* the rows match the model (clients' mode, status and wallet; deposits).

And at the end (`Sim.finish`): nothing reserved forever.

Each run gets fresh wallets, its own active config (source and commission
wallet) and three fresh currency codes: balances in them belong to this run
alone. Whatever a run leaves open is retired (dismissed) at its end, so the
next run's recovery passes do not work on it.

A bug the simulation found that is not fixed yet is listed in KNOWN_BUGS: a
run that hits it stops there (noted, counted in the summary) instead of
failing, and its regression test in test_simulation.py is xfail(strict=True).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import re
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

from api_helpers import fresh_currency
from hypothesis import strategies as st

# --------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Register:
    """A client registers. `via="api"`: the operator's POST /clients (mode flow
    or fixed). `via="direct"`: the client extension's own INSERT into
    satoshimachine.dca_clients, unvalidated (mode 'FLOW', status 'weird', a
    NULL limit ...)."""

    via: str = "api"
    mode: str = "flow"
    status: str = "active"
    limit: str | None = None


@dataclass(frozen=True)
class Deposit:
    client: int = 0
    amount: str = "10.00"
    currency: int = 0
    confirm: bool = True


@dataclass(frozen=True)
class ConfirmDeposit:
    deposit: int = 0


@dataclass(frozen=True)
class EditDeposit:
    deposit: int = 0
    amount: str = "10.00"
    currency: int | None = None


@dataclass(frozen=True)
class CancelDeposit:
    deposit: int = 0


@dataclass(frozen=True)
class SetStatus:
    client: int = 0
    status: str = "inactive"


@dataclass(frozen=True)
class Settle:
    """A customer sells sats at the ATM: a real payment into the source wallet,
    with bitSpire metadata (split at once) or none (waits for the operator)."""

    currency: int = 0
    fiat: str = "100.00"
    fee_pct: int = 5
    metadata: bool = True
    bills: bool = False


@dataclass(frozen=True)
class Interrupted:
    """A settlement whose processing is interrupted: the money lock is held
    while the payment arrives, then the lookup, the plan and only the first
    `paid` payouts run (as a crash would leave it); with `drain` the source
    wallet is then emptied (its remaining payouts and commission fail); then
    the lock is released and the listener carries on."""

    currency: int = 0
    fiat: str = "100.00"
    fee_pct: int = 5
    paid: int = 1
    drain: bool = False


@dataclass(frozen=True)
class EnterCashOut:
    """The operator enters a waiting settlement's cash-out data by hand:
    `how="principal"` (the ATM's split) or `"commission"` (a percentage)."""

    settlement: int = 0
    how: str = "principal"


@dataclass(frozen=True)
class Dismiss:
    settlement: int = 0


@dataclass(frozen=True)
class Duplicate:
    """The listener is handed the same payment again."""

    settlement: int = 0


@dataclass(frozen=True)
class Recovery:
    """A recovery pass (tasks.run_recovery); passes=2: two at the same time."""

    passes: int = 1


@dataclass(frozen=True)
class Retry:
    """POST /settlements/{id}/retry, alone or racing a recovery pass."""

    settlement: int = 0
    with_recovery: bool = False


@dataclass(frozen=True)
class Resolve:
    """POST /reconciliations/{id}/resolve. `target` picks the wallet
    (send_to_wallet: two spare wallets, then the clients' wallets, deleted ones
    included) or the client (attribute_to_client)."""

    orphan: int = 0
    action: str = "operator_funds"
    target: int = 0
    with_recovery: bool = False


@dataclass(frozen=True)
class Drain:
    """The source wallet's whole balance is paid out to a sink wallet (every
    transfer from it fails until TopUp)."""


@dataclass(frozen=True)
class TopUp:
    """The operator puts the drained sats back (env.fund)."""


@dataclass(frozen=True)
class CancelPayout:
    payout: int = 0


@dataclass(frozen=True)
class DeleteWallet:
    """The client deletes their wallet (lnbits.core.crud.delete_wallet)."""

    client: int = 0


@dataclass(frozen=True)
class NewWallet:
    """The client gets a new wallet of the same user; the operator points the
    client at it (PUT /clients/{id} with wallet_id)."""

    client: int = 0


Step = (
    Register
    | Deposit
    | ConfirmDeposit
    | EditDeposit
    | CancelDeposit
    | SetStatus
    | Settle
    | Interrupted
    | EnterCashOut
    | Dismiss
    | Duplicate
    | Recovery
    | Retry
    | Resolve
    | Drain
    | TopUp
    | CancelPayout
    | DeleteWallet
    | NewWallet
)

# ---------------------------------------------------------------- strategies


def _cents(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


INDEX = st.integers(0, 5)
DEPOSIT_FIAT = st.one_of(
    st.sampled_from(["50.00", "7.54", "2.38", "0.07", "100.00", "690.00"]),
    st.integers(1, 100_000).map(_cents),
)
SETTLE_FIAT = st.one_of(
    st.sampled_from(["100.00", "2000.00", "10.00"]),
    st.integers(100, 150_000).map(_cents),
)
CURRENCY = st.integers(0, 2)

FEE_PCT = st.sampled_from([5, 0, 8])
ACTIONS = st.sampled_from(["operator_funds", "send_to_wallet", "attribute_to_client"])

REGISTER_API = st.builds(
    Register,
    via=st.just("api"),
    mode=st.sampled_from(["flow", "flow", "fixed"]),
    limit=st.sampled_from([None, "25.00"]),
)
REGISTER_DIRECT = st.builds(
    Register,
    via=st.just("direct"),
    mode=st.sampled_from(["flow", "fixed", "FLOW", "weird"]),
    status=st.sampled_from(["active", "active", "inactive", "weird"]),
    limit=st.sampled_from([None, "25.00"]),
)

# One strategy per kind of step (test_simulation.py makes each a rule).
STRATEGIES: dict[type, st.SearchStrategy] = {
    Register: st.one_of(REGISTER_API, REGISTER_DIRECT),
    Deposit: st.builds(
        Deposit,
        client=INDEX,
        amount=DEPOSIT_FIAT,
        currency=CURRENCY,
        confirm=st.booleans(),
    ),
    ConfirmDeposit: st.builds(ConfirmDeposit, deposit=INDEX),
    EditDeposit: st.builds(
        EditDeposit,
        deposit=INDEX,
        amount=DEPOSIT_FIAT,
        currency=st.one_of(st.none(), CURRENCY),
    ),
    CancelDeposit: st.builds(CancelDeposit, deposit=INDEX),
    SetStatus: st.builds(
        SetStatus, client=INDEX, status=st.sampled_from(["inactive", "active"])
    ),
    Settle: st.builds(
        Settle,
        currency=CURRENCY,
        fiat=SETTLE_FIAT,
        fee_pct=FEE_PCT,
        metadata=st.booleans(),
        bills=st.booleans(),
    ),
    Interrupted: st.builds(
        Interrupted,
        currency=CURRENCY,
        fiat=SETTLE_FIAT,
        fee_pct=FEE_PCT,
        paid=st.integers(0, 2),
        drain=st.booleans(),
    ),
    EnterCashOut: st.builds(
        EnterCashOut,
        settlement=INDEX,
        how=st.sampled_from(["principal", "commission"]),
    ),
    Dismiss: st.builds(Dismiss, settlement=INDEX),
    Duplicate: st.builds(Duplicate, settlement=INDEX),
    Recovery: st.builds(Recovery, passes=st.sampled_from([1, 2])),
    Retry: st.builds(Retry, settlement=INDEX, with_recovery=st.booleans()),
    Resolve: st.builds(
        Resolve,
        orphan=INDEX,
        action=ACTIONS,
        target=INDEX,
        with_recovery=st.booleans(),
    ),
    Drain: st.builds(Drain),
    TopUp: st.builds(TopUp),
    CancelPayout: st.builds(CancelPayout, payout=INDEX),
    DeleteWallet: st.builds(DeleteWallet, client=INDEX),
    NewWallet: st.builds(NewWallet, client=INDEX),
}

# How often each kind of step is drawn: a kind appears in one_of once per unit
# of weight. Deposits, resolutions and settlements carry the money; the rest
# happens around them.
WEIGHTS: list[tuple[st.SearchStrategy, int]] = [
    # First: hypothesis draws branch 0 far more often than its weight (about
    # one step in six) and shrinks toward it. A recovery pass is what the
    # extension's loop does every minute anyway.
    (STRATEGIES[Recovery], 1),
    (STRATEGIES[Deposit].map(lambda d: replace(d, confirm=True)), 4),
    (STRATEGIES[Resolve], 4),
    (STRATEGIES[Settle].map(lambda s: replace(s, metadata=True)), 4),
    (STRATEGIES[Interrupted], 2),
    (STRATEGIES[Settle].map(lambda s: replace(s, metadata=False, bills=False)), 2),
    (STRATEGIES[EnterCashOut], 2),
    (STRATEGIES[CancelPayout], 2),
    (STRATEGIES[Retry], 2),
    (STRATEGIES[Drain], 2),
    (STRATEGIES[TopUp], 1),
    (REGISTER_API, 2),
    (REGISTER_DIRECT, 1),
    (STRATEGIES[DeleteWallet], 1),
    (STRATEGIES[NewWallet], 1),
    (STRATEGIES[Duplicate], 1),
    (STRATEGIES[Deposit].map(lambda d: replace(d, confirm=False)), 1),
    (STRATEGIES[ConfirmDeposit], 1),
    (STRATEGIES[EditDeposit], 1),
    (STRATEGIES[CancelDeposit], 1),
    (STRATEGIES[SetStatus], 1),
    (STRATEGIES[Dismiss], 1),
]


def _same(step):
    return step


# one_of drops repeated strategies, so each copy is a distinct (identity) map.
STEPS = st.one_of(
    [strategy.map(_same) for strategy, weight in WEIGHTS for _ in range(weight)]
)

# Fiat per BTC of each of a run's three currencies: 100 sats per unit, a rate
# with a remainder, and the seed incident's rate.
RATES = [Decimal("1000000"), Decimal("950000"), Decimal("666164.22")]
WAITING = ("pending", "waiting_data", "waiting_dispense", "flagged", "stale")
PLANNED = ("distributing", "completed", "payout_failed")
RETRYABLE = ("distributing", "payout_failed", "pending", "waiting_data")
RETRYABLE += ("waiting_dispense", "stale")

_used_codes: list[str] = []
_reuse = itertools.count()


def run_currency() -> str:
    """api_helpers.fresh_currency() while it has codes (real ISO codes, never
    used by another test), then this module's earlier codes again, round
    robin: a run's clients are deactivated when it ends (Sim.retire), so a
    code a finished run used belongs to nobody's balance any more."""
    try:
        code = fresh_currency()
    except StopIteration:
        return _used_codes[next(_reuse) % len(_used_codes)]
    _used_codes.append(code)
    return code


def fresh_randomness() -> None:
    """Hypothesis seeds the global `random` the same way for every example;
    LNbits draws wallets' lightning-address names from it, and after a few
    runs every name it offers is taken. Each step starts from fresh entropy
    (what hypothesis draws is unaffected)."""
    random.seed(uuid.uuid4().int)


def principal_for(fiat: Decimal, rate: Decimal) -> int:
    """round_half_up(fiat * 1e8 / rate): what the cash is worth in sats."""
    exact = Fraction(fiat) * 100_000_000 / Fraction(rate)
    return int(exact + Fraction(1, 2))


# --------------------------------------------------------------------- model


@dataclass
class ClientModel:
    index: int
    id: str
    user_id: str
    wallet_id: str
    mode: str
    status: str
    via: str
    wallets: list[str] = field(default_factory=list)
    limit: Decimal | None = None  # fixed mode's daily limit


@dataclass
class DepositModel:
    id: str
    client: ClientModel
    amount: Decimal
    currency: str
    status: str


@dataclass
class AtmPayment:
    index: int
    payment_hash: str
    sats: int
    currency: str
    fiat: Decimal  # the cash that left the machine
    principal: int
    fee: int
    metadata: bool
    paid_step: int
    settlement_id: str | None = None


@dataclass
class Stats:
    """What the runs covered: rule counts, rule variants (with the answer
    they got), consecutive rule pairs."""

    examples: int = 0
    steps: int = 0
    skipped: int = 0
    rules: Counter = field(default_factory=Counter)
    variants: Counter = field(default_factory=Counter)
    pairs: Counter = field(default_factory=Counter)
    skips: Counter = field(default_factory=Counter)
    known: Counter = field(default_factory=Counter)

    def report(self, title: str, seconds: float) -> str:
        lines = [
            title,
            f"examples: {self.examples}, steps run: {self.steps} "
            f"(skipped, nothing to act on: {self.skipped}), {seconds:.1f} s",
            f"distinct rules: {len(self.rules)}, distinct rule variants: "
            f"{len(self.variants)}, distinct consecutive rule pairs: "
            f"{len(self.pairs)}",
            "",
            "rules:",
        ]
        lines += [
            f"  {n:5d}  {name}"
            + (f"  (+{self.skips[name]} skipped)" if self.skips[name] else "")
            for name, n in self.rules.most_common()
        ]
        if self.known:
            lines += ["", "runs stopped by a known (xfail) bug:"]
            lines += [f"  {n:5d}  {name}" for name, n in self.known.items()]
        lines += ["", "variants (rule[detail] -> outcome):"]
        lines += [f"  {n:5d}  {name}" for name, n in sorted(self.variants.items())]
        lines += ["", "consecutive pairs:"]
        lines += [f"  {n:5d}  {a} -> {b}" for (a, b), n in sorted(self.pairs.items())]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class KnownBug:
    """A bug the simulation found that is not fixed yet: its regression test
    in test_simulation.py is xfail(strict=True), and a run that hits it (every
    problem of a check matches `pattern`) stops there instead of failing, so
    the random simulation stays green until the fix lands. Then the
    regression test XPASSes (strict: it fails) and both go:
    SATMACHINE_SIM_STRICT=1 makes known bugs fail the simulation too."""

    name: str
    pattern: str
    regression_test: str


# Both bugs found so far are fixed (their regression tests in
# test_simulation.py pass): a stored invoice is never paid into a deleted
# wallet, and an orphan is never attributed to a client without a wallet.
KNOWN_BUGS: list[KnownBug] = []
STRICT = os.environ.get("SATMACHINE_SIM_STRICT") == "1"


def known_bug(problem: str) -> KnownBug | None:
    for bug in KNOWN_BUGS:
        if re.search(bug.pattern, problem):
            return bug
    return None


class NothingToActOnError(Exception):
    """The step has nothing to act on: it is skipped."""


# ---------------------------------------------------------------- simulation


class Sim:
    def __init__(
        self, env, recover=None, stats: Stats | None = None, strict: bool = False
    ):
        from satmachineadmin import tasks

        self.strict = strict  # known bugs fail too (the regression tests)
        self.env = env
        self.recover = recover or tasks.run_recovery
        self.stats = stats
        self.step_no = 0
        self.notes: list[str] = []
        self.started = False
        self.failed = False
        self.halted: list[str] = []  # known bugs this run hit
        self.funded = 0  # every sat env.fund minted into this run's wallets
        self.drained = 0  # sats drained from the source, not topped up yet
        self.sunk = 0
        self.wallets: dict[str, str] = {}  # wallet id -> what it is
        self.deleted: dict[str, int] = {}  # wallet id -> its sats when deleted
        self.clients: list[ClientModel] = []
        self.deposits: list[DepositModel] = []
        self.atm: list[AtmPayment] = []
        self.deposit_step: dict[str, int] = {}  # first step it was confirmed
        self.payout_rows: dict[str, tuple] = {}  # first view of each payout
        self.planned: dict[str, set[str]] = {}  # settlement -> its flow payouts
        self.resolved: dict[str, tuple] = {}  # orphan -> (resolution, target)
        self.previous_rule = "start"
        self.final = False  # the operator's clean-up: not counted as steps
        self.history: list = []  # the scenario's steps, as applied
        self.start_args: dict[str, Any] = {}
        self.source_sats = 0  # after the last check

    # ------------------------------------------------------------- plumbing

    def say(self, line: str) -> None:
        self.notes.append(line)

    def take_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        log = os.environ.get("SATMACHINE_SIM_LOG")
        if log and notes:
            with open(log, "a") as out:
                out.write("\n".join(notes) + "\n")
        return notes

    async def api(self, method: str, path: str, expect=None, **kw):
        response = await self.env.api(method, path, **kw)
        assert (
            response.status_code < 500
        ), f"{method} {path} answered {response.status_code}: {response.text}"
        if expect is not None and response.status_code not in expect:
            raise AssertionError(
                f"{method} {path} answered {response.status_code}, expected "
                f"{expect}: {response.text}"
            )
        return response

    async def _wallet(self, role: str, user_id: str | None = None) -> str:
        wallet = await self.env.wallet(f"{self.prefix} {role}", user_id)
        self.wallets[wallet.id] = role
        return wallet.id

    def set_market(self) -> None:
        """LNbits' exchange-rate service (offline: its cache) quotes each of
        the run's currencies at the rate the ATM uses: honest cash-outs."""
        from lnbits.utils.cache import cache

        for code, rate in zip(self.currencies, RATES, strict=True):
            cache.set(f"btc-price-{code}", float(rate), expiry=24 * 3600)

    async def fund(self, wallet_id: str, sats: int) -> None:
        await self.env.fund(wallet_id, sats)
        self.funded += sats

    # ---------------------------------------------------------------- start

    async def start(
        self,
        commission: bool = True,
        seed: tuple[str, ...] = (),
        remedy: str = "new_wallet",
    ):
        fresh_randomness()
        self.remedy = remedy
        self.start_args = {"commission": commission, "seed": seed, "remedy": remedy}
        self.prefix = "sim" + uuid.uuid4().hex[:10]
        self.currencies = [run_currency() for _ in RATES]
        self.set_market()
        self.source = await self._wallet("source")
        self.commission = await self._wallet("commission") if commission else None
        self.payer = await self._wallet("atm customer")
        self.sink = await self._wallet("sink")
        self.targets = [await self._wallet(f"target {i}") for i in range(2)]
        config = {"source_wallet_id": self.source}
        if self.commission:
            config["commission_wallet_id"] = self.commission
        await self.api("POST", "/config", expect=(201,), json=config)
        self.started = True
        self.say(
            f"start: run {self.prefix}, currencies {self.currencies}, "
            f"commission wallet {'yes' if commission else 'no (kept in source)'}, "
            f"remedy for a deleted wallet: {remedy}"
        )
        for amount in seed:
            client = await self._new_client(Register())
            await self._deposit(Deposit(client.index, amount, 0, True))
        if seed:
            self.say(f"seed: {len(seed)} flow clients with {list(seed)} confirmed")
        await self.check()

    # ----------------------------------------------------------------- steps

    async def apply(self, step) -> None:
        if self.halted:
            self.say(f"   {step!r}: not run (known bug {self.halted} hit)")
            return
        if not self.final:
            self.history.append(step)
        fresh_randomness()
        self.step_no += 1
        self.path = ""
        rule = type(step).__name__
        try:
            outcome = await getattr(self, f"_{rule.lower()}")(step)
        except NothingToActOnError as skip:
            self.say(f"#{self.step_no} {step!r}: skipped ({skip})")
            if self.stats and not self.final:
                self.stats.skipped += 1
                self.stats.skips[rule] += 1
            return
        except BaseException:
            self.failed = True
            self.say(f"#{self.step_no} {step!r}: raised")
            raise
        self.say(f"#{self.step_no} {step!r}: {outcome}")
        if self.stats and not self.final:
            self.stats.steps += 1
            self.stats.rules[rule] += 1
            path = f" {self.path}" if self.path else ""
            self.stats.variants[f"{rule}{self._variant(step)}{path}"] += 1
            self.stats.pairs[(self.previous_rule, rule)] += 1
        self.previous_rule = rule
        try:
            await self.check()
        except BaseException:
            self.failed = True
            raise

    @staticmethod
    def _variant(step) -> str:
        if isinstance(step, Register):
            return f"[{step.via} {step.mode} {step.status}]"
        if isinstance(step, Resolve):
            return f"[{step.action}{' +recovery' if step.with_recovery else ''}]"
        if isinstance(step, Settle):
            return f"[{'bitspire' if step.metadata else 'no data'}]"
        if isinstance(step, Recovery):
            return f"[{step.passes}]"
        if isinstance(step, Retry):
            return "[+recovery]" if step.with_recovery else ""
        if isinstance(step, EnterCashOut):
            return f"[{step.how}]"
        return ""

    def _pick(self, items: list, index: int, what: str):
        if not items:
            raise NothingToActOnError(f"no {what}")
        return items[index % len(items)]

    async def _new_client(self, step: Register) -> ClientModel:
        from satmachineadmin.crud import db

        index = len(self.clients)
        name = f"{self.prefix}-c{index}"
        account, wallet = await self.env.user_with_wallet(name)
        self.wallets[wallet.id] = f"client {index} wallet"
        if step.via == "api":
            body: dict[str, Any] = {
                "wallet_id": wallet.id,
                "username": name,
                "dca_mode": step.mode,
            }
            if step.mode == "fixed":
                # The API wants a limit for a fixed client (#12).
                body["fixed_mode_daily_limit"] = step.limit or "25.00"
            response = await self.api("POST", "/clients", expect=(201,), json=body)
            client_id, status = response.json()["id"], "active"
        else:
            # What the client extension does on registration: its own INSERT,
            # unvalidated strings, the limit as it likes it.
            client_id, status = uuid.uuid4().hex[:22], step.status
            await db.execute(
                "INSERT INTO satoshimachine.dca_clients (id, user_id, wallet_id, "
                "username, dca_mode, fixed_mode_daily_limit, status, created_at, "
                f"updated_at) VALUES (:id, :user, :wallet, :name, :mode, :limit, "
                f":status, {db.timestamp_now}, {db.timestamp_now})",
                {
                    "id": client_id,
                    "user": account.id,
                    "wallet": wallet.id,
                    "name": name,
                    "mode": step.mode,
                    "limit": Decimal(step.limit) if step.limit else None,
                    "status": status,
                },
            )
        client = ClientModel(
            index, client_id, account.id, wallet.id, step.mode, status, step.via
        )
        if step.mode == "fixed":
            limit = step.limit or ("25.00" if step.via == "api" else None)
            client.limit = Decimal(limit) if limit else None
        client.wallets.append(wallet.id)
        self.clients.append(client)
        return client

    async def _register(self, step: Register) -> str:
        client = await self._new_client(step)
        return f"client {client.index} ({step.via}, {client.mode}, {client.status})"

    async def _deposit(self, step: Deposit) -> str:
        client = self._pick(self.clients, step.client, "client")
        currency = self.currencies[step.currency % len(self.currencies)]
        response = await self.api(
            "POST",
            "/deposits",
            expect=(201,),
            json={"client_id": client.id, "amount": step.amount, "currency": currency},
        )
        deposit = DepositModel(
            response.json()["id"], client, Decimal(step.amount), currency, "pending"
        )
        self.deposits.append(deposit)
        if step.confirm:
            await self.api(
                "PUT",
                f"/deposits/{deposit.id}/status",
                expect=(200,),
                json={"status": "confirmed"},
            )
            deposit.status = "confirmed"
        return (
            f"deposit {len(self.deposits) - 1}: client {client.index} "
            f"{step.amount} {currency} {deposit.status}"
        )

    def _pick_deposit(self, index: int) -> DepositModel:
        pending = [d for d in self.deposits if d.status == "pending"]
        return self._pick(pending or self.deposits, index, "deposit")

    async def _deposit_status(self, index: int, status: str) -> str:
        deposit = self._pick_deposit(index)
        ok = deposit.status == "pending"
        await self.api(
            "PUT",
            f"/deposits/{deposit.id}/status",
            expect=(200,) if ok else (409,),
            json={"status": status},
        )
        self.path = f"{deposit.status} -> {200 if ok else 409}"
        if ok:
            deposit.status = status
        return f"deposit {self.deposits.index(deposit)}: {'200' if ok else '409'}"

    async def _confirmdeposit(self, step: ConfirmDeposit) -> str:
        return await self._deposit_status(step.deposit, "confirmed")

    async def _canceldeposit(self, step: CancelDeposit) -> str:
        return await self._deposit_status(step.deposit, "cancelled")

    async def _editdeposit(self, step: EditDeposit) -> str:
        deposit = self._pick_deposit(step.deposit)
        ok = deposit.status == "pending"
        body: dict[str, Any] = {"amount": step.amount}
        currency = deposit.currency
        if step.currency is not None:
            currency = self.currencies[step.currency % len(self.currencies)]
            body["currency"] = currency
        await self.api(
            "PUT",
            f"/deposits/{deposit.id}",
            expect=(200,) if ok else (409,),
            json=body,
        )
        self.path = f"{deposit.status} -> {200 if ok else 409}"
        if ok:
            deposit.amount, deposit.currency = Decimal(step.amount), currency
        return f"deposit {self.deposits.index(deposit)}: {'200' if ok else '409'}"

    async def _setstatus(self, step: SetStatus) -> str:
        client = self._pick(self.clients, step.client, "client")
        await self.api(
            "PUT",
            f"/clients/{client.id}/status",
            expect=(200,),
            json={"status": step.status},
        )
        self.path = f"{client.status} -> {step.status}"
        client.status = step.status
        return f"client {client.index} {step.status}"

    # ---------------------------------------------------------- settlements

    def _atm_extra(self, pay: AtmPayment, rate: Decimal, bills: bool) -> dict:
        extra: dict[str, Any] = {
            "source": "bitspire",
            "principal_sats": pay.principal,
            "fee_sats": pay.fee,
            "exchange_rate": str(rate),
            "currency": pay.currency,
            "txid": f"{self.prefix}-tx{pay.index}",
            "machine_npub": "npub1simulation",
            "cassettes": [{"denomination": 100, "count": 10}],
        }
        if bills:
            extra["bills"] = [{"denomination": str(pay.fiat), "count": 1}]
        return extra

    def _new_atm_payment(self, currency_index: int, fiat: str, fee_pct: int):
        index = currency_index % len(self.currencies)
        rate = RATES[index]
        cash = Decimal(fiat)
        principal = principal_for(cash, rate)
        fee = principal * fee_pct // 100
        pay = AtmPayment(
            index=len(self.atm),
            payment_hash="",
            sats=principal + fee,
            currency=self.currencies[index],
            fiat=cash,
            principal=principal,
            fee=fee,
            metadata=True,
            paid_step=self.step_no,
        )
        return pay, rate

    async def _pay_atm(self, pay: AtmPayment, extra: dict | None) -> None:
        await self.fund(self.payer, pay.sats)
        pay.payment_hash = await self.env.pay(
            self.payer, self.source, pay.sats, memo="ATM Lightning Sale", extra=extra
        )
        self.atm.append(pay)

    async def _wait_processed(self, payment_hash: str, timeout: float = 15.0):
        """Until the listener has recorded the payment and its processing run
        is over (the money lock free, the settlement past pending/ready and
        not distributing: every run ends elsewhere)."""
        from satmachineadmin.crud import get_settlement_by_hash
        from satmachineadmin.locks import processing_lock

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        settlement = None
        while loop.time() < deadline:
            settlement = await get_settlement_by_hash(payment_hash)
            busy = processing_lock.locked()
            if settlement and not busy:
                if settlement.status not in ("pending", "ready", "distributing"):
                    return settlement
            await asyncio.sleep(0.01)
        return settlement

    async def _settle(self, step: Settle) -> str:
        pay, rate = self._new_atm_payment(step.currency, step.fiat, step.fee_pct)
        pay.metadata = step.metadata
        if step.metadata and not step.bills:
            # Without bills the fiat is what the principal is worth at the rate.
            value = Decimal(pay.principal) * rate / 100_000_000
            pay.fiat = value.quantize(Decimal("0.01"))
        expected = None
        if step.metadata:
            expected = await self._expected_plan(pay, pay.fiat, pay.principal, None)
        extra = self._atm_extra(pay, rate, step.bills) if step.metadata else None
        await self._pay_atm(pay, extra)
        settlement = await self._wait_processed(pay.payment_hash)
        assert settlement, f"ATM payment {pay.payment_hash} never became a settlement"
        pay.settlement_id = settlement.id
        if expected is not None:
            await self._compare_plan(settlement.id, expected)
        self.path = f"-> {settlement.status}"
        return (
            f"settlement {pay.index}: {pay.sats} sats, {pay.fiat} {pay.currency} "
            f"-> {settlement.status}"
        )

    async def _interrupted(self, step: Interrupted) -> str:
        from satmachineadmin import transaction_processor as tp
        from satmachineadmin.crud import (
            get_config,
            get_settlement_by_hash,
            get_settlement_payouts,
        )
        from satmachineadmin.locks import processing_lock

        pay, rate = self._new_atm_payment(step.currency, step.fiat, step.fee_pct)
        value = Decimal(pay.principal) * rate / 100_000_000
        pay.fiat = value.quantize(Decimal("0.01"))
        expected = await self._expected_plan(pay, pay.fiat, pay.principal, None)
        paid = 0
        async with processing_lock:  # the listener records it, then waits
            await self._pay_atm(pay, self._atm_extra(pay, rate, False))
            settlement = None
            for _ in range(500):
                settlement = await get_settlement_by_hash(pay.payment_hash)
                if settlement:
                    break
                await asyncio.sleep(0.01)
            assert settlement, "the listener never recorded the payment"
            config = await get_config()
            settlement = await tp._lookup(settlement, config)
            if settlement.status == "ready":
                settlement = await tp._plan(settlement, config)
                for payout in (await get_settlement_payouts(settlement.id))[
                    : step.paid
                ]:
                    paid += bool(await tp._pay_payout(settlement, payout))
            drained = await self._drain_source() if step.drain else 0
        settlement = await self._wait_processed(pay.payment_hash)
        assert settlement
        pay.settlement_id = settlement.id
        await self._compare_plan(settlement.id, expected)
        self.path = f"{'drained ' if drained else ''}-> {settlement.status}"
        return (
            f"settlement {pay.index}: {pay.sats} sats, {pay.fiat} {pay.currency}, "
            f"{paid} paid before the interruption"
            f"{f', then {drained} sats drained' if drained else ''}"
            f" -> {settlement.status}"
        )

    async def _settlement_row(self, pay: AtmPayment):
        from satmachineadmin.crud import get_settlement_by_hash

        settlement = await get_settlement_by_hash(pay.payment_hash)
        assert settlement, f"no settlement for ATM payment {pay.index}"
        pay.settlement_id = settlement.id
        return settlement

    async def _entercashout(self, step: EnterCashOut) -> str:
        from satmachineadmin.allocation import split_from_commission

        pay = self._pick(
            [p for p in self.atm if not p.metadata],
            step.settlement,
            "settlement without data",
        )
        settlement = await self._settlement_row(pay)
        body: dict[str, Any] = {
            "fiat_amount": str(pay.fiat),
            "fiat_code": pay.currency,
            "note": "typed in by the simulation",
        }
        if step.how == "principal":
            body["principal_sats"] = pay.principal
            principal = pay.principal
        else:
            percentage = Decimal(pay.fee) / Decimal(pay.sats)
            percentage = percentage.quantize(Decimal("0.0001"))
            body["commission_percentage"] = str(percentage)
            principal = split_from_commission(pay.sats, percentage).principal_sats
        ok = settlement.status in WAITING
        expected = None
        if ok:
            expected = await self._expected_plan(
                pay, pay.fiat, principal, settlement.id
            )
        response = await self.api(
            "PUT",
            f"/settlements/{settlement.id}/cash-out",
            expect=(200,) if ok else (409,),
            json=body,
        )
        if expected is not None:
            await self._compare_plan(settlement.id, expected)
        status = response.json().get("status") if ok else "409"
        self.path = f"{settlement.status} -> {status}"
        return f"settlement {pay.index} ({settlement.status}) -> {status}"

    async def _dismiss(self, step: Dismiss) -> str:
        pay = self._pick(self.atm, step.settlement, "settlement")
        settlement = await self._settlement_row(pay)
        ok = settlement.status in WAITING
        await self.api(
            "PUT",
            f"/settlements/{settlement.id}/dismiss",
            expect=(200,) if ok else (409,),
            json={"reason": "simulation: not a sale"},
        )
        self.path = f"{settlement.status} -> {200 if ok else 409}"
        return f"settlement {pay.index} ({settlement.status}) -> {self.path}"

    async def _duplicate(self, step: Duplicate) -> str:
        from lnbits.core.crud import get_standalone_payment
        from satmachineadmin.tasks import on_invoice_paid

        pay = self._pick(self.atm, step.settlement, "settlement")
        payment = await get_standalone_payment(pay.payment_hash, incoming=True)
        assert payment
        await on_invoice_paid(payment)
        settlement = await self._wait_processed(pay.payment_hash)
        status = settlement.status if settlement else None
        return f"settlement {pay.index} notified again -> {status}"

    async def _recovery(self, step: Recovery) -> str:
        await asyncio.gather(*(self.recover() for _ in range(step.passes)))
        return f"{step.passes} pass(es)"

    async def _retry(self, step: Retry) -> str:
        from satmachineadmin.crud import get_settlement_by_hash

        unfinished = []
        for candidate in self.atm:
            row = await get_settlement_by_hash(candidate.payment_hash)
            if row and row.status in RETRYABLE:
                unfinished.append(candidate)
        pay = self._pick(unfinished or self.atm, step.settlement, "settlement")
        settlement = await self._settlement_row(pay)
        call = self.env.api("POST", f"/settlements/{settlement.id}/retry")
        if step.with_recovery:
            response, _ = await asyncio.gather(call, self.recover())
        else:
            response = await call
        assert response.status_code < 500, response.text
        if settlement.status not in RETRYABLE:
            assert response.status_code == 409, (settlement.status, response.text)
        elif not step.with_recovery:
            assert response.status_code == 200, (settlement.status, response.text)
        after = await self._settlement_row(pay)
        self.path = f"{settlement.status} -> {response.status_code} {after.status}"
        return (
            f"settlement {pay.index} ({settlement.status}) -> "
            f"{response.status_code} {after.status}"
        )

    # -------------------------------------------------------------- orphans

    async def _orphans(self) -> list:
        from satmachineadmin.crud import db
        from satmachineadmin.models import Reconciliation

        return await db.fetchall(
            "SELECT r.* FROM satoshimachine.reconciliations r JOIN "
            "satoshimachine.settlements s ON s.id = r.settlement_id "
            "WHERE s.wallet_id = :source ORDER BY r.created_at, r.id",
            {"source": self.source},
            Reconciliation,
        )

    async def _resolve(self, step: Resolve) -> str:
        orphans = await self._orphans()
        open_ones = [r for r in orphans if r.status == "open"]
        rec = self._pick(open_ones or orphans, step.orphan, "orphan")
        number = [r.id for r in orphans].index(rec.id)
        body: dict[str, Any] = {"action": step.action, "note": "simulation"}
        target, kind = "", ""
        if step.action == "send_to_wallet":
            candidates = self.targets + [w for c in self.clients for w in c.wallets]
            body["wallet_id"] = candidates[step.target % len(candidates)]
            target = f" to {self.wallets[body['wallet_id']]}"
            kind = (
                " spare wallet"
                if body["wallet_id"] in self.targets
                else " client wallet"
            )
            if body["wallet_id"] in self.deleted:
                target += " (deleted)"
                kind = " deleted wallet"
        elif step.action == "attribute_to_client":
            client = self._pick(self.clients, step.target, "client")
            body["client_id"] = client.id
            target = f" to client {client.index} ({client.status})"
            kind = f" {client.status} client"
            if client.wallet_id in self.deleted:
                kind += " (wallet deleted)"
        call = self.env.api("POST", f"/reconciliations/{rec.id}/resolve", json=body)
        if step.with_recovery:
            response, _ = await asyncio.gather(call, self.recover())
        else:
            response = await call
        code = response.status_code
        assert code < 500, response.text
        if rec.status != "open":
            assert code == 409, (rec.status, response.text)
        elif not step.with_recovery:
            if step.action == "operator_funds":
                assert code == 200, response.text
            if step.action == "attribute_to_client":
                active = self._pick(self.clients, step.target, "client").status
                if active != "active":
                    assert code == 400, response.text
            if code == 400:
                assert step.action != "operator_funds", response.text
        funds = "" if self.source_sats >= rec.orphan_sats else " (source short)"
        self.path = f"{rec.status}{kind}{funds} -> {code}"
        detail = _detail(response)
        return (
            f"orphan {number} ({rec.orphan_sats} sats, {rec.status}){target}: "
            f"{code}{detail}"
        )

    # --------------------------------------------------------------- wallets

    async def _drain_source(self) -> int:
        sats = await self.env.balance(self.source)
        if sats > 0:
            await self.env.pay(self.source, self.sink, sats, memo="drain")
            self.drained += sats
            self.sunk += sats
        return sats

    async def _drain(self, step: Drain) -> str:
        sats = await self._drain_source()
        if sats <= 0:
            raise NothingToActOnError("source wallet already empty")
        return f"{sats} sats out of the source wallet"

    async def _topup(self, step: TopUp) -> str:
        if not self.drained:
            raise NothingToActOnError("nothing drained")
        sats, self.drained = self.drained, 0
        await self.fund(self.source, sats)
        return f"{sats} sats back into the source wallet"

    async def _payouts(self) -> list:
        from satmachineadmin.crud import db
        from satmachineadmin.models import DcaPayment

        return await db.fetchall(
            "SELECT p.* FROM satoshimachine.dca_payments p JOIN "
            "satoshimachine.settlements s ON s.id = p.settlement_id "
            "WHERE s.wallet_id = :source ORDER BY p.created_at, p.id",
            {"source": self.source},
            DcaPayment,
        )

    async def _cancelpayout(self, step: CancelPayout) -> str:
        payouts = await self._payouts()
        open_ones = [p for p in payouts if p.status in ("pending", "failed")]
        payout = self._pick(open_ones or payouts, step.payout, "payout")
        response = await self.api(
            "POST",
            f"/payouts/{payout.id}/cancel",
            json={"reason": "simulation: can never succeed"},
        )
        if (
            payout.status in ("confirmed", "cancelled")
            or payout.transaction_type == "orphan"
        ):
            assert response.status_code == 409, response.text
        client = next(c for c in self.clients if c.id == payout.client_id)
        self.path = (
            f"{payout.transaction_type} {payout.status} -> {response.status_code}"
        )
        return (
            f"{payout.transaction_type} payout of client {client.index} "
            f"({payout.amount_sats} sats, {payout.status}): {response.status_code}"
            f"{_detail(response)}"
        )

    async def _deletewallet(self, step: DeleteWallet) -> str:
        from lnbits.core.crud import delete_wallet

        client = self._pick(self.clients, step.client, "client")
        if client.wallet_id in self.deleted:
            raise NothingToActOnError("wallet already deleted")
        sats = await self._wallet_sats(client.wallet_id)
        await delete_wallet(user_id=client.user_id, wallet_id=client.wallet_id)
        self.deleted[client.wallet_id] = sats
        self.path = "with sats" if sats else "empty"
        return f"client {client.index} deleted its wallet ({sats} sats in it)"

    async def _newwallet(self, step: NewWallet) -> str:
        client = self._pick(self.clients, step.client, "client")
        wallet_id = await self._wallet(
            f"client {client.index} wallet {len(client.wallets)}", client.user_id
        )
        await self.api(
            "PUT", f"/clients/{client.id}", expect=(200,), json={"wallet_id": wallet_id}
        )
        client.wallet_id = wallet_id
        client.wallets.append(wallet_id)
        return f"client {client.index} now at wallet {len(client.wallets) - 1}"

    async def _wallet_sats(self, wallet_id: str) -> int:
        return (await self._balances([wallet_id]))[0][wallet_id]

    # ----------------------------------------------------------------- oracle

    async def _expected_plan(
        self,
        pay: AtmPayment,
        fiat: Decimal,
        principal: int,
        settlement_id: str | None,
    ):
        """The split the rules promise, computed from the model: the active
        flow clients (exactly 'active' and 'flow'), their deposits in the
        currency confirmed before the payment, less what is paid or reserved
        in that currency (the stored payouts, this settlement's excluded);
        and the active fixed clients with a limit, capped at what is left of
        it today (#12: their fixed payouts in the operator's day)."""
        from satmachineadmin.allocation import (
            ClientBalance,
            PrincipalSplit,
            distribute,
            to_fiat,
        )
        from satmachineadmin.crud import db, get_config
        from satmachineadmin.fixed_mode import as_utc, fixed_day, remaining_allowance
        from satmachineadmin.models import DcaDeposit, DcaPayment, utc_now

        day = fixed_day(await get_config(), utc_now())

        ids = [c.id for c in self.clients]
        if not ids:
            return distribute(
                pay.sats, PrincipalSplit(principal, pay.sats - principal), fiat, []
            )
        marks, values = _in("c", ids)
        deposits = await db.fetchall(
            f"SELECT * FROM satoshimachine.dca_deposits WHERE client_id IN ({marks})",
            values,
            DcaDeposit,
        )
        payouts = await db.fetchall(
            f"SELECT * FROM satoshimachine.dca_payments WHERE client_id IN ({marks})",
            values,
            DcaPayment,
        )
        self._note_confirmations(deposits)
        have: dict[str, Decimal] = defaultdict(Decimal)
        for d in deposits:
            if (
                d.status == "confirmed"
                and d.currency == pay.currency
                and self.deposit_step[d.id] < pay.paid_step
            ):
                have[d.client_id] += d.amount
        spent: dict[str, Decimal] = defaultdict(Decimal)
        used: dict[str, Decimal] = defaultdict(Decimal)
        for p in payouts:
            reserved = p.status in ("pending", "failed") and p.settlement_id
            if (
                (p.status == "confirmed" or reserved)
                and p.currency == pay.currency
                and (settlement_id is None or p.settlement_id != settlement_id)
            ):
                spent[p.client_id] += p.amount_fiat
                moment = as_utc(p.transaction_time or p.created_at)
                if p.transaction_type == "fixed" and day.start <= moment < day.end:
                    used[p.client_id] += p.amount_fiat
        balances = []
        for c in self.clients:
            fixed = c.mode == "fixed" and c.limit and pay.currency == day.currency
            if c.status != "active" or (c.mode != "flow" and not fixed):
                continue
            remaining = to_fiat(have[c.id]) - to_fiat(spent[c.id])
            if remaining > 0:
                cap = None
                if fixed:
                    assert c.limit
                    cap = remaining_allowance(c.limit, day.maximum, used[c.id])
                balances.append(ClientBalance(c.id, remaining, cap))
        return distribute(
            pay.sats, PrincipalSplit(principal, pay.sats - principal), fiat, balances
        )

    async def _compare_plan(self, settlement_id: str, expected) -> None:
        from satmachineadmin.crud import get_settlement, get_settlement_payouts

        settlement = await get_settlement(settlement_id)
        assert settlement
        assert settlement.status in PLANNED, (
            f"settlement {settlement_id} was not split: {settlement.status} "
            f"({settlement.status_detail})"
        )
        index = {c.id: c.index for c in self.clients}
        got = sorted(
            (index.get(p.client_id, p.client_id), p.amount_sats, p.amount_fiat)
            for p in await get_settlement_payouts(settlement_id)
            if p.transaction_type != "orphan"
        )
        want = sorted(
            (index.get(a.client_id, a.client_id), a.sats, a.fiat)
            for a in expected.allocations
        )
        problems = []
        if got != want:
            problems.append(f"payouts (client, sats, fiat) {got} != expected {want}")
        if (settlement.principal_sats, settlement.commission_sats) != (
            expected.principal_sats,
            expected.commission_sats,
        ):
            problems.append(
                f"split {settlement.principal_sats}/{settlement.commission_sats} != "
                f"{expected.principal_sats}/{expected.commission_sats}"
            )
        if (settlement.orphan_sats or 0, settlement.orphan_fiat or 0) != (
            expected.orphan_sats,
            expected.orphan_fiat,
        ):
            problems.append(
                f"orphan {settlement.orphan_sats} sats / {settlement.orphan_fiat} != "
                f"{expected.orphan_sats} / {expected.orphan_fiat}"
            )
        assert (
            not problems
        ), "invariant 'the split follows the rules' violated: " + "; ".join(problems)

    def _note_confirmations(self, deposits) -> None:
        for d in deposits:
            if d.status == "confirmed" and d.id not in self.deposit_step:
                self.deposit_step[d.id] = self.step_no

    # ------------------------------------------------------------- invariants

    async def _balances(self, wallet_ids: list[str]):
        """Each wallet's sats (deleted wallets too: LNbits' balances view hides
        them) and its settled incoming payments, from apipayments."""
        from lnbits.core.db import db as core_db

        marks, values = _in("w", wallet_ids)
        rows = await core_db.fetchall(
            "SELECT wallet_id, payment_hash, amount, fee, status, extra, memo "
            f"FROM apipayments WHERE wallet_id IN ({marks})",
            values,
        )
        sats: dict[str, int] = dict.fromkeys(wallet_ids, 0)
        incoming = []
        for row in rows:
            amount, fee = int(row["amount"]), abs(int(row["fee"] or 0))
            status = row["status"]
            if (status == "success" and amount > 0) or (
                status in ("success", "pending") and amount < 0
            ):
                sats[row["wallet_id"]] += amount - fee
            if status == "success" and amount > 0:
                extra = row["extra"]
                if isinstance(extra, str):
                    try:
                        extra = json.loads(extra)
                    except ValueError:
                        extra = {}
                incoming.append((row["wallet_id"], amount // 1000, extra or {}))
        for wallet_id, msat in sats.items():
            assert msat % 1000 == 0, (wallet_id, msat)
            sats[wallet_id] = msat // 1000
        return sats, incoming

    async def _read(self) -> dict:
        from satmachineadmin.crud import db
        from satmachineadmin.models import (
            DcaClient,
            DcaDeposit,
            DcaPayment,
            Settlement,
        )

        settlements = await db.fetchall(
            "SELECT * FROM satoshimachine.settlements WHERE wallet_id = :source",
            {"source": self.source},
            Settlement,
        )
        clients, deposits, payouts = [], [], []
        if self.clients:
            marks, values = _in("c", [c.id for c in self.clients])
            clients = await db.fetchall(
                f"SELECT * FROM satoshimachine.dca_clients WHERE id IN ({marks})",
                values,
                DcaClient,
            )
            deposits = await db.fetchall(
                "SELECT * FROM satoshimachine.dca_deposits "
                f"WHERE client_id IN ({marks})",
                values,
                DcaDeposit,
            )
            payouts = await db.fetchall(
                "SELECT * FROM satoshimachine.dca_payments "
                f"WHERE client_id IN ({marks})",
                values,
                DcaPayment,
            )
        sats, incoming = await self._balances(list(self.wallets))
        response = await self.api(
            "GET",
            "/clients",
            expect=(200,),
            params={"search": self.prefix, "limit": 1000},
        )
        return {
            "settlements": settlements,
            "orphans": await self._orphans(),
            "clients": clients,
            "deposits": deposits,
            "payouts": payouts,
            "sats": sats,
            "incoming": incoming,
            "figures": {c["id"]: c for c in response.json()},
        }

    async def check(self) -> None:
        state = await self._read()
        self.source_sats = state["sats"][self.source]
        self._note_confirmations(state["deposits"])
        problems: list[str] = []
        for invariant in (
            self._no_sat_created_or_lost,
            self._settlements_are_the_atm_payments,
            self._settlements_add_up,
            self._payouts_paid_once,
            self._commission_paid_once,
            self._orphans_resolved_once,
            self._rows_match_the_model,
        ):
            problems += [f"{invariant.__name__[1:]}: {p}" for p in invariant(state)]
        problems += await self._balances_agree(state)
        self.violated(f"after step {self.step_no}, invariants violated", problems)

    def violated(self, header: str, problems: list[str]) -> None:
        """Fail with every problem; or, when each one is a known bug, note it
        and stop the run (see KnownBug)."""
        if not problems:
            return
        bugs = [known_bug(p) for p in problems]
        if not (STRICT or self.strict) and all(bugs):
            self.halted = sorted({b.name for b in bugs if b})
            self.say(
                f"KNOWN BUG {self.halted} (regression tests "
                f"{sorted({b.regression_test for b in bugs if b})}); the run stops "
                "here:\n  " + "\n  ".join(problems)
            )
            if self.stats:
                for name in self.halted:
                    self.stats.known[name] += 1
            return
        self.failed = True
        raise AssertionError(f"{header}:\n  " + "\n  ".join(problems))

    def _no_sat_created_or_lost(self, state) -> list[str]:
        sats = state["sats"]
        problems = []
        total = sum(sats.values())
        if total != self.funded:
            problems.append(
                f"the run's wallets hold {total} sats but {self.funded} were funded "
                f"({total - self.funded:+d})"
            )
        for wallet_id, at_deletion in self.deleted.items():
            if sats[wallet_id] != at_deletion:
                problems.append(
                    f"{self.wallets[wallet_id]} was deleted holding {at_deletion} "
                    f"sats and now holds {sats[wallet_id]}: sats paid into a "
                    "deleted wallet are lost to the client"
                )
        if sats[self.sink] != self.sunk:
            problems.append(f"sink holds {sats[self.sink]}, drained {self.sunk}")
        return problems

    def _settlements_are_the_atm_payments(self, state) -> list[str]:
        by_hash = Counter(s.payment_hash for s in state["settlements"])
        problems = []
        ours = {p.payment_hash for p in self.atm}
        for pay in self.atm:
            if by_hash[pay.payment_hash] != 1:
                problems.append(
                    f"ATM payment {pay.index} has {by_hash[pay.payment_hash]} "
                    "settlements"
                )
        for s in state["settlements"]:
            if s.payment_hash not in ours:
                problems.append(
                    f"settlement {s.id} ({s.amount_sats} sats, memo {s.memo!r}) "
                    "is not an ATM payment"
                )
        return problems

    def _settlements_add_up(self, state) -> list[str]:
        problems = []
        payouts_of = defaultdict(list)
        for p in state["payouts"]:
            payouts_of[p.settlement_id].append(p)
        orphans_of = defaultdict(list)  # one per settlement today; never assumed
        for r in state["orphans"]:
            orphans_of[r.settlement_id].append(r)
        for s in state["settlements"]:
            name = f"settlement {self._atm_index(s.payment_hash)} ({s.status})"
            flow = [p for p in payouts_of[s.id] if p.transaction_type != "orphan"]
            if s.status not in PLANNED:
                if flow:
                    problems.append(f"{name} has payouts but was never split")
                continue
            live = [p for p in flow if p.status != "cancelled"]
            paid = sum(p.amount_sats for p in live)
            orphan = s.orphan_sats or 0
            if paid + (s.commission_sats or 0) + orphan != s.amount_sats:
                problems.append(
                    f"{name}: payouts {paid} + commission {s.commission_sats} + "
                    f"orphan {orphan} != {s.amount_sats} sats"
                )
            if (s.principal_sats or 0) + (s.commission_sats or 0) != s.amount_sats:
                problems.append(f"{name}: principal + commission != amount")
            fiat = sum((p.amount_fiat for p in live), Decimal(0))
            if fiat + (s.orphan_fiat or 0) != s.fiat_amount:
                problems.append(
                    f"{name}: payouts {fiat} + orphan {s.orphan_fiat} != "
                    f"{s.fiat_amount} {s.fiat_code}"
                )
            if (s.distributed_sats or 0) != paid:
                problems.append(
                    f"{name}: distributed_sats {s.distributed_sats} != {paid}"
                )
            recs = orphans_of[s.id]
            rec_sats = sum(r.orphan_sats for r in recs)
            rec_fiat = sum((r.orphan_fiat for r in recs), Decimal(0))
            if rec_sats != orphan or rec_fiat != (s.orphan_fiat or 0):
                problems.append(
                    f"{name}: orphan {orphan} sats / {s.orphan_fiat} but its "
                    f"reconciliations say {rec_sats} / {rec_fiat}"
                )
            if s.status == "completed":
                open_ones = [
                    p for p in flow if p.status not in ("confirmed", "cancelled")
                ]
                if open_ones or s.commission_status not in ("confirmed", "kept"):
                    problems.append(
                        f"{name} is completed with {len(open_ones)} unpaid payouts, "
                        f"commission {s.commission_status}"
                    )
            # Planned once: the payout rows of a split never change.
            ids = {p.id for p in flow}
            if s.id in self.planned and ids != self.planned[s.id]:
                problems.append(f"{name}: its payouts changed after the split")
            self.planned.setdefault(s.id, ids)
        for p in state["payouts"]:
            row = (
                p.settlement_id,
                p.client_id,
                p.amount_sats,
                p.amount_fiat,
                p.currency,
            )
            first = self.payout_rows.setdefault(p.id, row)
            if first != row:
                problems.append(f"payout {p.id} changed from {first} to {row}")
        return problems

    def _payouts_paid_once(self, state) -> list[str]:
        """Every sat a client wallet received is one confirmed payout (or an
        orphan sent there), once, into one of that client's wallets."""
        problems = []
        clients = {c.id: c for c in self.clients}
        received = defaultdict(list)
        for wallet_id, sats, extra in state["incoming"]:
            if extra.get("payout_id"):
                received[extra["payout_id"]].append((wallet_id, sats))
        for p in state["payouts"]:
            client = clients[p.client_id]
            got = received.pop(p.id, [])
            who = f"{p.transaction_type} payout {p.id} of client {client.index}"
            if p.status == "confirmed":
                if len(got) != 1:
                    problems.append(f"{who} is confirmed but was paid {len(got)} times")
                for wallet_id, sats in got:
                    if sats != p.amount_sats or wallet_id not in client.wallets:
                        problems.append(
                            f"{who}: {sats} sats went to {self.wallets.get(wallet_id)}"
                        )
            elif got:
                problems.append(
                    f"{who} is {p.status} but {sum(s for _, s in got)} sats were paid"
                )
        for payout_id, got in received.items():
            problems.append(f"unknown payout {payout_id} paid {got}")
        sends = defaultdict(int)
        for rec in state["orphans"]:
            if rec.status == "resolved" and rec.resolution == "send_to_wallet":
                sends[rec.target_wallet_id] += rec.orphan_sats
        confirmed = defaultdict(int)
        for p in state["payouts"]:
            if p.status == "confirmed":
                confirmed[p.client_id] += p.amount_sats
        for c in self.clients:
            have = sum(state["sats"][w] for w in c.wallets)
            want = confirmed[c.id] + sum(sends[w] for w in c.wallets)
            if have != want:
                problems.append(
                    f"client {c.index}'s wallets hold {have} sats, its confirmed "
                    f"payouts and orphans sent to it total {want}"
                )
        for t in self.targets:
            if state["sats"][t] != sends[t]:
                problems.append(
                    f"{self.wallets[t]} holds {state['sats'][t]} sats, orphans "
                    f"sent to it total {sends[t]}"
                )
        return problems

    def _commission_paid_once(self, state) -> list[str]:
        problems = []
        paid = defaultdict(list)
        for wallet_id, sats, extra in state["incoming"]:
            if extra.get("kind") == "commission":
                paid[extra.get("settlement_id")].append((wallet_id, sats))
        total = 0
        for s in state["settlements"]:
            got = paid.pop(s.id, [])
            name = f"settlement {self._atm_index(s.payment_hash)}"
            want = 1 if s.commission_status == "confirmed" else 0
            if len(got) != want:
                problems.append(
                    f"{name}: commission {s.commission_status} but paid "
                    f"{len(got)} times"
                )
            for wallet_id, sats in got:
                total += sats
                if wallet_id != self.commission or sats != s.commission_sats:
                    problems.append(f"{name}: commission of {sats} sats to {wallet_id}")
            if s.status in PLANNED and not self.commission:
                if s.commission_status != "kept":
                    problems.append(f"{name}: commission {s.commission_status}")
        for settlement_id in paid:
            problems.append(f"commission paid for unknown settlement {settlement_id}")
        if self.commission and state["sats"][self.commission] != total:
            problems.append(
                f"commission wallet holds {state['sats'][self.commission]}, "
                f"commissions paid total {total}"
            )
        return problems

    def _orphans_resolved_once(self, state) -> list[str]:
        problems = []
        sent = defaultdict(list)
        for wallet_id, sats, extra in state["incoming"]:
            if extra.get("kind") == "orphan" and extra.get("reconciliation_id"):
                sent[extra["reconciliation_id"]].append((wallet_id, sats))
        attributions = defaultdict(list)  # settlement -> its orphan payouts
        for p in state["payouts"]:
            if p.transaction_type == "orphan" and p.status != "cancelled":
                attributions[p.settlement_id].append(p)
        attributed = Counter(r.settlement_id for r in state["orphans"] if r.deposit_id)
        deposits = {d.id: d for d in state["deposits"]}
        orphan_deposits = Counter(
            (d.notes or "")
            for d in state["deposits"]
            if (d.notes or "").startswith("orphan funds")
        )
        for number, rec in enumerate(state["orphans"]):
            name = f"orphan {number} ({rec.status} {rec.resolution})"
            got = sent.pop(rec.id, [])
            is_send = rec.status == "resolved" and rec.resolution == "send_to_wallet"
            if len(got) != (1 if is_send else 0):
                problems.append(f"{name}: sent {len(got)} times: {got}")
            for wallet_id, sats in got:
                if wallet_id != rec.target_wallet_id or sats != rec.orphan_sats:
                    problems.append(
                        f"{name}: {sats} sats went to {self.wallets.get(wallet_id)}, "
                        f"target {self.wallets.get(rec.target_wallet_id)}"
                    )
            # An attribution is one deposit and one payout, once.
            sid = rec.settlement_id
            if len(attributions[sid]) != attributed[sid]:
                problems.append(
                    f"{name}: {len(attributions[sid])} attribution payouts for "
                    f"{attributed[sid]} recorded attribution(s)"
                )
            notes = f"orphan funds of settlement {sid}"
            if orphan_deposits[notes] != attributed[sid]:
                problems.append(
                    f"{name}: {orphan_deposits[notes]} attribution deposits for "
                    f"{attributed[sid]} recorded attribution(s)"
                )
            if rec.deposit_id:
                deposit = deposits.get(rec.deposit_id)
                if (
                    not deposit
                    or deposit.status != "confirmed"
                    or deposit.amount != rec.orphan_fiat
                    or deposit.client_id != rec.target_client_id
                ):
                    problems.append(f"{name}: its deposit is {deposit}")
            if rec.status == "resolved" and rec.resolution == "attribute_to_client":
                done = [
                    p
                    for p in attributions[sid]
                    if p.status == "confirmed"
                    and (p.id == rec.payout_id or not rec.payout_id)
                ]
                if len(done) != 1 or done[0].amount_sats != rec.orphan_sats:
                    problems.append(f"{name}: resolved but its payout is not confirmed")
            before = self.resolved.get(rec.id)
            now = (rec.resolution, rec.target_wallet_id, rec.orphan_sats)
            if before and (rec.status != "resolved" or now != before):
                problems.append(
                    f"{name}: was resolved as {before}, now {rec.status} {now}"
                )
            if rec.status == "resolved":
                self.resolved.setdefault(rec.id, now)
        for rec_id, got in sent.items():
            problems.append(
                f"orphan sats sent for unknown reconciliation {rec_id}: {got}"
            )
        return problems

    def _rows_match_the_model(self, state) -> list[str]:
        problems = []
        rows = {c.id: c for c in state["clients"]}
        for c in self.clients:
            row = rows.get(c.id)
            if not row or (row.status, row.dca_mode, row.wallet_id) != (
                c.status,
                c.mode,
                c.wallet_id,
            ):
                problems.append(f"client {c.index} row {row} != model {c}")
        stored = {d.id: d for d in state["deposits"]}
        for i, d in enumerate(self.deposits):
            row = stored.get(d.id)
            if not row or (row.amount, row.currency, row.status) != (
                d.amount,
                d.currency,
                d.status,
            ):
                problems.append(
                    f"deposit {i} row {row and (row.amount, row.currency, row.status)}"
                    f" != model {(d.amount, d.currency, d.status)}"
                )
        return problems

    async def _balances_agree(self, state) -> list[str]:
        """What the operator sees (remaining + reserved) equals the client
        extension's formula in each currency; never below 0.00, never above
        the deposits; reserved is exactly the unfinished payouts' fiat."""
        from satmachineadmin.allocation import to_fiat

        problems = []
        deposits = defaultdict(Decimal)
        for d in state["deposits"]:
            if d.status == "confirmed":
                deposits[(d.client_id, d.currency)] += d.amount
        paid = defaultdict(Decimal)
        reserved = defaultdict(Decimal)
        for p in state["payouts"]:
            if p.status == "confirmed":
                paid[(p.client_id, p.currency)] += p.amount_fiat
            elif p.status in ("pending", "failed") and p.settlement_id:
                reserved[(p.client_id, p.currency)] += p.amount_fiat
        currencies_of = defaultdict(set)
        for d in state["deposits"]:
            currencies_of[d.client_id].add(d.currency)
        for c in self.clients:
            figures = state["figures"].get(c.id)
            if figures is None:
                problems.append(f"client {c.index} missing from GET /clients")
                continue
            shown = {f["currency"]: f for f in figures.get("balances", [])}
            for currency in sorted(currencies_of[c.id] | set(shown)):
                key = (c.id, currency)
                ext = to_fiat(deposits[key]) - to_fiat(paid[key])
                f = shown.get(currency)
                name = f"client {c.index} in {currency}"
                if f is None:
                    problems.append(f"{name}: no figures shown")
                    continue
                remaining = Decimal(str(f["remaining_balance"]))
                held = Decimal(str(f["reserved_fiat"]))
                if remaining + held != ext:
                    problems.append(
                        f"{name}: operator sees {remaining} + reserved {held}, the "
                        f"client extension {ext}"
                    )
                if held != to_fiat(reserved[key]):
                    problems.append(f"{name}: reserved {held} != {reserved[key]}")
                if remaining < 0 or ext < 0 or ext > to_fiat(deposits[key]):
                    problems.append(
                        f"{name}: balance {remaining} (client extension {ext}) "
                        f"outside 0.00 .. {deposits[key]}"
                    )
            if len(currencies_of[c.id]) == 1:
                [currency] = currencies_of[c.id]
                response = await self.api(
                    "GET", f"/clients/{c.id}/balance", expect=(200,)
                )
                body = response.json()
                key = (c.id, currency)
                ext = to_fiat(deposits[key]) - to_fiat(paid[key])
                shown_total = Decimal(str(body["remaining_balance"])) + Decimal(
                    str(body["reserved_fiat"])
                )
                if body["currency"] != currency or shown_total != ext:
                    problems.append(
                        f"client {c.index}: /balance says {body['remaining_balance']}"
                        f" + {body['reserved_fiat']} {body['currency']}, the client "
                        f"extension {ext} {currency}"
                    )
        return problems

    def _atm_index(self, payment_hash: str):
        for pay in self.atm:
            if pay.payment_hash == payment_hash:
                return pay.index
        return payment_hash[:8]

    # ---------------------------------------------------------------- finish

    async def finish(self) -> None:
        """The operator's clean-up, then: nothing reserved forever.

        The source wallet is topped up and the recovery loop runs (as it would
        by itself, every minute); then each client whose wallet is gone gets
        the run's remedy: a new wallet (`new_wallet`), or the operator cancels
        its unfinished payouts, the payouts that "can never succeed"
        (`cancel`); then a recovery pass, a retry of every unfinished
        settlement, and another pass. After that no settlement may be left
        distributing or failed, no orphan half-resolved, no payout unfinished
        and no fiat reserved."""
        try:
            if not self.started or self.failed or self.halted:
                return
            self.final = True
            self.say(f"final: top up, recovery, remedy {self.remedy!r}, retries")
            if self.drained:
                await self.apply(TopUp())
            await self.apply(Recovery())
            refused: dict[str, str] = {}  # payout id -> why it cannot be cancelled
            for c in self.clients:
                if self.halted or c.wallet_id not in self.deleted:
                    continue
                if self.remedy == "new_wallet":
                    await self.apply(NewWallet(c.index))
                    continue
                for p in await self._payouts():
                    if p.client_id != c.id or p.status not in ("pending", "failed"):
                        continue
                    response = await self.api(
                        "POST",
                        f"/payouts/{p.id}/cancel",
                        json={"reason": "the client deleted their wallet"},
                    )
                    self.say(
                        f"final: cancel the {p.transaction_type} payout of client "
                        f"{c.index} ({p.amount_sats} sats, {p.status}): "
                        f"{response.status_code} {response.text[:160]}"
                    )
                    if response.status_code != 200:
                        refused[p.id] = (
                            f"the {p.transaction_type} payout of client {c.index} "
                            f"to its deleted wallet can be neither paid nor "
                            f"cancelled: {response.status_code} {response.text[:160]}"
                        )
                    await self.check()
            if self.halted:
                return
            await self.apply(Recovery())
            from satmachineadmin.crud import get_settlement

            for pay in self.atm:
                s = (
                    await get_settlement(pay.settlement_id)
                    if pay.settlement_id
                    else None
                )
                if s and s.status in ("distributing", "payout_failed"):
                    await self.apply(Retry(pay.index))
            await self.apply(Recovery())
            if self.halted:
                return
            self.violated(
                "invariant 'nothing reserved forever' violated",
                list(refused.values())
                + self._left_unfinished(await self._read(), refused),
            )
        finally:
            await self.retire()

    def _left_unfinished(self, state, refused: dict[str, str]) -> list[str]:
        """What is still open after the clean-up, leaving out what follows
        from a payout that could not be cancelled (reported on its own)."""
        problems = []
        stuck = [p for p in state["payouts"] if p.status in ("pending", "failed")]
        excused = {p.id for p in stuck if p.id in refused}
        for p in stuck:
            if p.id not in excused:
                problems.append(
                    f"{p.transaction_type} payout {p.id} still {p.status}: {p.error}"
                )
        for s in state["settlements"]:
            if s.status not in ("distributing", "payout_failed", "ready"):
                continue
            mine = [p for p in stuck if p.settlement_id == s.id]
            if (
                mine
                and all(p.id in excused for p in mine)
                and (s.commission_status not in ("pending", "failed"))
            ):
                continue
            problems.append(
                f"settlement {self._atm_index(s.payment_hash)} still "
                f"{s.status}: {s.status_detail}"
            )
        for number, rec in enumerate(state["orphans"]):
            if rec.status == "resolving" and rec.payout_id not in excused:
                problems.append(f"orphan {number} still resolving: {rec.error}")
        held = defaultdict(Decimal)
        for p in stuck:
            if p.id in excused and p.settlement_id:
                held[(p.client_id, p.currency)] += p.amount_fiat
        for c in self.clients:
            for f in state["figures"].get(c.id, {}).get("balances", []):
                reserved = Decimal(str(f["reserved_fiat"]))
                if reserved != held[(c.id, f["currency"])]:
                    problems.append(
                        f"client {c.index} still has {f['reserved_fiat']} "
                        f"{f['currency']} reserved"
                    )
        return problems

    async def retire(self) -> None:
        """Keep later runs' recovery passes off this run's leftovers."""
        if not self.started:
            return
        from satmachineadmin.crud import db

        await db.execute(
            "UPDATE satoshimachine.reconciliations SET status = 'resolved' "
            "WHERE status = 'resolving' AND settlement_id IN (SELECT id FROM "
            "satoshimachine.settlements WHERE wallet_id = :source)",
            {"source": self.source},
        )
        await db.execute(
            "UPDATE satoshimachine.settlements SET status = 'dismissed' "
            "WHERE wallet_id = :source AND status NOT IN ('completed', 'dismissed')",
            {"source": self.source},
        )
        for client in self.clients:
            await db.execute(
                "UPDATE satoshimachine.dca_clients SET status = 'inactive' "
                "WHERE id = :id",
                {"id": client.id},
            )


def _detail(response) -> str:
    """An error answer's detail, short, for the notes."""
    if response.status_code < 300:
        return ""
    try:
        return f" ({str(response.json().get('detail'))[:80]})"
    except ValueError:
        return ""


def _in(prefix: str, values: list[str]) -> tuple[str, dict[str, str]]:
    keys = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return ", ".join(f":{k}" for k in keys), keys


async def replay(
    env,
    steps: list,
    commission: bool = True,
    seed: tuple[str, ...] = (),
    remedy: str = "new_wallet",
    recover=None,
    quiet: bool = False,
) -> Sim:
    """Run one scenario from start to finish (the regression tests): every
    invariant violation fails, known bugs included."""
    sim = Sim(env, recover=recover, strict=True)
    try:
        await sim.start(commission, seed, remedy)
        for step in steps:
            await sim.apply(step)
        await sim.finish()
    finally:
        notes = sim.take_notes()
        if not quiet:
            print("\n".join(notes))
        await sim.retire()
    return sim


def failure_signature(error: BaseException) -> tuple[str, ...]:
    """What failed, without the numbers: the invariants named in the message
    (or the exception's type), to tell the same failure from another one."""
    text = str(error)
    names = re.findall(r"^\s+(\w+): ", text, re.MULTILINE)
    names += re.findall(r"invariant '([^']+)'", text)
    return tuple(sorted(set(names))) or (type(error).__name__,)


def scenario_code(steps: list, start_args: dict[str, Any]) -> str:
    """A scenario as the replay(...) call that runs it."""
    lines = ["await replay(", "    env,", "    ["]
    lines += [f"        {step!r}," for step in steps]
    lines += ["    ],"]
    lines += [f"    {key}={value!r}," for key, value in start_args.items()]
    lines += ["    recover=paused_recovery,", ")"]
    return "\n".join(lines)


async def minimize(
    env,
    steps: list,
    start_args: dict[str, Any],
    signature: tuple[str, ...],
    recover=None,
    seconds: float = 600,
) -> tuple[list, dict[str, Any], int]:
    """Delta debugging over whole steps: drop chunks of steps (halves, then
    quarters, ... then single steps) and seed clients while the scenario still
    fails the same way. Hypothesis shrinks the choice sequence, and spends
    most of a long run's budget turning steps into the simplest one; this
    finishes the job in replays that get cheaper as the scenario shrinks.
    Returns (steps, start arguments, replays run)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    replays = 0

    async def still_fails(candidate: list, args: dict[str, Any]) -> bool:
        nonlocal replays
        replays += 1
        try:
            await replay(env, candidate, recover=recover, quiet=True, **args)
        except Exception as error:
            return failure_signature(error) == signature
        return False

    args = dict(start_args)
    chunk = max(1, len(steps) // 2)
    while chunk >= 1 and loop.time() < deadline:
        removed = False
        start = 0
        while start < len(steps) and loop.time() < deadline:
            candidate = steps[:start] + steps[start + chunk :]
            if await still_fails(candidate, args):
                steps, removed = candidate, True
            else:
                start += chunk
        if not removed:
            chunk //= 2
    seed = list(args.get("seed", ()))
    for i in reversed(range(len(seed))):
        if loop.time() >= deadline or len(seed) <= 1:
            break
        fewer = {**args, "seed": tuple(seed[:i] + seed[i + 1 :])}
        if await still_fails(steps, fewer):
            seed.pop(i)
            args = fewer
    return steps, args, replays
