"""A ledger that checks itself (issue 17).

A hypothesis state machine drives the real extension inside the in-process
LNbits of conftest.py (FakeWallet, real internal payments; SQLite, or
PostgreSQL with SATMACHINE_TEST_DB=postgres) through what happens in
production, and after every step checks that the books balance
(tests/sim_helpers.py has the steps and the invariants).

How it runs: the harness is async, on one event loop for the whole session,
while hypothesis' RuleBasedStateMachine calls its rules synchronously. The test
itself is therefore a plain (sync) test: it asks for the session loop (through
an async session fixture) and each rule runs its step on that loop with
`loop.run_until_complete(...)`. Between steps the loop is idle, so LNbits'
own tasks (the invoice listener) run while a step awaits, exactly as in a
server. The machine has one rule, `step(step=...)`, whose argument is a step
description drawn with fixed weights (sim_helpers.WEIGHTS; one rule rather
than one per kind, because hypothesis' swarm testing switches random subsets
of rules off per example, which in 15 examples left whole paths unvisited). A
falsifying example therefore prints as a list of steps
(`state.step(step=Settle(currency=1, fiat='100.00', ...))`) that pastes
straight into `replay(...)`; hypothesis shrinks it by deleting and simplifying
steps, and every step's outcome is `note()`d, so the failure reads as a
scenario. A step with nothing to act on (a retry before any settlement) is
skipped, at no cost.

The extension's background recovery loop (every 60 s) is paused while a run
is on (`paused_recovery`): recovery passes are steps of their own (one, two
at once, or racing a retry or a resolution), so a failure replays the same
way every time.

Bounded for CI: 15 examples x 25 steps, derandomized (the same runs every
time, on both databases). SATMACHINE_SIMULATE=1 runs 200 x 60 with fresh
randomness and up to an hour of shrinking (`make simulate`, both databases).
Knobs: SATMACHINE_SIM_EXAMPLES / SATMACHINE_SIM_STEPS (size),
SATMACHINE_SIM_SHRINK_SECONDS (hypothesis' shrink budget, 5 min by default),
SATMACHINE_SIM_STRICT=1 (known bugs fail too), SATMACHINE_SIM_LOG=<file>
(every step of every run, as noted). The steps, rules, rule variants and
consecutive rule pairs covered are written to test-artifacts/simulation-<db>.txt;
its first lines are shown at the end of the run.

Every failing sequence the simulation found is kept below as a plain async
regression test replaying its steps; those of bugs not fixed yet are
xfail(strict=True), and a random run that hits one of them stops there
(sim_helpers.KNOWN_BUGS) so CI stays green until the fix lands.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)
from sim_helpers import (
    DEPOSIT_FIAT,
    STEPS,
    DeleteWallet,
    Deposit,
    Drain,
    EnterCashOut,
    Interrupted,
    Recovery,
    Register,
    Resolve,
    Retry,
    Settle,
    Sim,
    Stats,
    TopUp,
    failure_signature,
    minimize,
    replay,
    scenario_code,
)

SIMULATE = os.environ.get("SATMACHINE_SIMULATE") == "1"
EXAMPLES = int(os.environ.get("SATMACHINE_SIM_EXAMPLES") or (200 if SIMULATE else 15))
STEP_COUNT = int(os.environ.get("SATMACHINE_SIM_STEPS") or (60 if SIMULATE else 25))
MINIMIZE_SECONDS = int(
    os.environ.get("SATMACHINE_SIM_MINIMIZE_SECONDS") or (1800 if SIMULATE else 300)
)
SHRINK_SECONDS = int(
    os.environ.get("SATMACHINE_SIM_SHRINK_SECONDS") or (900 if SIMULATE else 0)
)
DB = "postgres" if os.environ.get("SATMACHINE_TEST_DB") == "postgres" else "sqlite"
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def session_loop(env):
    return asyncio.get_running_loop()


@pytest.fixture
def paused_recovery(monkeypatch):
    """Pause the background recovery loop; return the real recovery pass."""
    from satmachineadmin import tasks

    real = tasks.run_recovery

    async def paused(look_up_now: bool = False) -> dict:
        return {"paused": "by the simulation"}

    monkeypatch.setattr(tasks, "run_recovery", paused)
    return real


@pytest.fixture(scope="module")
def sim_stats(request):
    """Counts what the simulation ran; at the end writes the summary to
    test-artifacts/simulation-<db>.txt and shows its head on the terminal."""
    stats = Stats()
    started = time.monotonic()
    yield stats
    if stats.examples:
        text = stats.report(
            f"simulation on {DB}: {EXAMPLES} examples x up to {STEP_COUNT} steps",
            time.monotonic() - started,
        )
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"simulation-{DB}.txt"
        path.write_text(text)
        plugins = request.config.pluginmanager
        terminal = plugins.getplugin("terminalreporter")
        capture = plugins.getplugin("capturemanager")
        if terminal and capture:
            with capture.global_and_fixture_disabled():
                terminal.write_line("")
                for line in text.splitlines()[:3]:
                    terminal.write_line(line)
                terminal.write_line(f"(rule counts, variants and pairs: {path})")


class LedgerMachine(RuleBasedStateMachine):
    """One example = one run of `Sim`: start, steps, the operator's clean-up."""

    env = None
    loop: asyncio.AbstractEventLoop
    recover = None
    stats: Stats

    last: Sim | None = None  # the latest run: after a failure, the minimal one

    def __init__(self):
        super().__init__()
        self.sim = Sim(self.env, recover=self.recover, stats=self.stats)
        LedgerMachine.last = self.sim

    def _run(self, coro):
        try:
            return self.loop.run_until_complete(coro)
        finally:
            for line in self.sim.take_notes():
                note(line)

    @initialize(
        commission=st.booleans(),
        seed=st.lists(DEPOSIT_FIAT, min_size=1, max_size=3).map(tuple),
        remedy=st.sampled_from(["new_wallet", "cancel"]),
    )
    def start(self, commission: bool, seed: tuple[str, ...], remedy: str) -> None:
        self.stats.examples += 1
        self._run(self.sim.start(commission, seed, remedy))

    @rule(step=STEPS)
    def step(self, step) -> None:
        self._run(self.sim.apply(step))

    def teardown(self) -> None:
        self._run(self.sim.finish())


def test_the_ledger_checks_itself(
    env, session_loop, paused_recovery, sim_stats, monkeypatch
):
    simulate(env, session_loop, paused_recovery, sim_stats, monkeypatch)


def simulate(
    env, loop, recover, stats: Stats, monkeypatch, examples=None, steps=None
) -> None:
    """Run the machine; on a failure, minimize the run hypothesis shrank to
    and fail with it written as a regression test."""
    if SHRINK_SECONDS:
        # Hypothesis gives up shrinking after 5 minutes; a run here takes
        # seconds to tens of seconds, so the long simulation allows more.
        from hypothesis.internal.conjecture import engine

        monkeypatch.setattr(engine, "MAX_SHRINKING_SECONDS", SHRINK_SECONDS)
    LedgerMachine.env = env
    LedgerMachine.loop = loop
    LedgerMachine.recover = recover
    LedgerMachine.stats = stats
    LedgerMachine.last = None
    try:
        run_state_machine_as_test(
            LedgerMachine,
            settings=settings(
                max_examples=examples or EXAMPLES,
                stateful_step_count=steps or STEP_COUNT,
                deadline=None,
                derandomize=not SIMULATE,
                # The long run keeps its failures (replayed first next time;
                # the tests run in a temporary folder, so the path is the
                # checkout's).
                database=(
                    DirectoryBasedExampleDatabase(
                        str(ROOT / ".hypothesis" / f"simulation-{DB}")
                    )
                    if SIMULATE
                    else None
                ),
                print_blob=True,
                suppress_health_check=list(HealthCheck),
            ),
        )
    except Exception as failure:
        # Hypothesis printed the run it shrank to (its last run); delta
        # debugging over whole steps finishes the job (sim_helpers.minimize).
        found = LedgerMachine.last
        if not found or not found.start_args or MINIMIZE_SECONDS <= 0:
            raise
        minimal, args, replays = loop.run_until_complete(
            minimize(
                env,
                found.history,
                found.start_args,
                failure_signature(failure),
                recover=recover,
                seconds=MINIMIZE_SECONDS,
            )
        )
        raise AssertionError(
            f"the simulation failed ({', '.join(failure_signature(failure))}); "
            f"hypothesis shrank it to {len(found.history)} steps, delta debugging "
            f"to {len(minimal)} in {replays} replays. As a regression test:\n\n"
            + scenario_code(minimal, args)
        ) from failure


# ------------------------------------------------------- regression scenarios
# Each one a sequence the simulation found failing, replayed step by step with
# every invariant checked after each step (`replay` is strict: a known bug
# fails it). A bug not fixed yet is xfail(strict=True): its test turns red
# the day the fix lands, and then the xfail and its sim_helpers.KNOWN_BUGS
# entry go.


@pytest.mark.asyncio(loop_scope="session")
async def test_replay_every_resolution_with_a_drained_source(env, paused_recovery):
    """Not a bug: a hand-written scenario through the main paths (a failed
    send, a new target, a waiting settlement, two passes at once, a retry
    racing a pass), so `replay` itself is exercised on both databases."""
    await replay(
        env,
        [
            Register(),
            Deposit(client=1, amount="30.00", currency=0),
            Settle(currency=0, fiat="100.00"),
            Drain(),
            Resolve(orphan=0, action="send_to_wallet", target=0),
            TopUp(),
            Resolve(orphan=0, action="send_to_wallet", target=1),
            Settle(currency=0, fiat="50.00", metadata=False),
            EnterCashOut(settlement=1, how="commission"),
            Recovery(passes=2),
            Retry(settlement=1, with_recovery=True),
        ],
        seed=("20.00",),
        recover=paused_recovery,
    )


@pytest.mark.asyncio(loop_scope="session")
async def test_fixed_a_retry_never_pays_a_stored_invoice_into_a_deleted_wallet(
    env, paused_recovery
):
    """Was a bug (fixed in e2a3a57: transfer() refuses a stored invoice whose
    wallet was deleted). Found by the random simulation (SATMACHINE_SIMULATE=1,
    a 40-step run; this is its core). A payout fails after its invoice was
    stored (the source wallet ran dry), the client deletes that wallet, the
    operator tops the source up, and the next recovery pass paid the stored
    invoice: 5,000 sats landed in a deleted wallet and the payout was
    `confirmed` (the client's dashboard counted them, the operator could no
    longer cancel or redirect it). A new invoice for that wallet was refused
    ("wallet not found"); a stored one was not.

    Invariant: no sat created or lost (a deleted wallet's sats are frozen)."""
    await replay(
        env,
        [
            Interrupted(currency=0, fiat="100.00", fee_pct=5, paid=0, drain=True),
            DeleteWallet(client=0),
            TopUp(),
            Recovery(),
        ],
        seed=("50.00",),
        recover=paused_recovery,
    )


@pytest.mark.asyncio(loop_scope="session")
async def test_fixed_b_failed_payout_cancellable_after_its_orphan_is_resolved(
    env, paused_recovery
):
    """Was a bug (found by the simulation, fixed meanwhile in 5f0f0fb, m013:
    a settlement may have several orphans). The client deletes their wallet;
    the next settlement's payout to them fails ("wallet not found"); the
    operator resolves that settlement's orphan (operator_funds); then gives
    up on the payout, as the README says to for a payout that can never
    succeed. POST /payouts/{id}/cancel answered 409 "this settlement's orphan
    is already resolved": the payout stayed failed, the settlement
    payout_failed, 50.00 of the client's fiat reserved, and every recovery
    pass retried it, forever. Now the cancelled payout's sats become an
    orphan of their own.

    Invariant: nothing reserved forever."""
    await replay(
        env,
        [
            DeleteWallet(client=0),
            Settle(currency=0, fiat="100.00"),
            Resolve(orphan=0, action="operator_funds"),
        ],
        seed=("50.00",),
        remedy="cancel",
        recover=paused_recovery,
    )


@pytest.mark.asyncio(loop_scope="session")
async def test_fixed_c_no_attribution_to_a_client_whose_wallet_is_gone(
    env, paused_recovery
):
    """Was a bug (fixed in e2a3a57: _target refuses a client whose wallet is
    gone; the API answers 400). Found by the random simulation. An orphan was
    attributed to an active client whose wallet is deleted: the deposit and
    the payout were recorded, the payment failed, the API answered 409 and
    the orphan was `resolving` for good. The operator could not cancel the
    payout ("an orphan attribution; it is retried with its reconciliation"),
    nor resolve the orphan otherwise (not open), and the recovery loop
    retried it every pass.

    Invariant: nothing reserved forever."""
    await replay(
        env,
        [
            Settle(currency=0, fiat="100.00"),
            DeleteWallet(client=0),
            Resolve(orphan=0, action="attribute_to_client", target=0),
        ],
        seed=("10.00",),
        remedy="cancel",
        recover=paused_recovery,
    )


@pytest.mark.asyncio(loop_scope="session")
async def test_fixed_c2_an_attribution_whose_wallet_goes_can_be_abandoned(
    env, paused_recovery
):
    """Was a bug (found by the simulation; fixed: cancelling the payout
    abandons the attribution, orphan_resolution.abandon_attribution). What
    the fix of C left open: the wallet check is made when the
    orphan is claimed, not when its payout is paid. The source wallet is
    empty, so the attribution is recorded (deposit + payout) but its payment
    fails; then the client deletes their wallet; the operator tops up and the
    recovery loop retries: "wallet ... was deleted", every pass. Giving up on
    the payout (POST /payouts/{id}/cancel) answers 409 "this payout is an
    orphan attribution; it is retried with its reconciliation", and the
    orphan is not open, so it cannot be resolved another way. The orphan's
    9,000 sats and the client's attributed 90.00 stay reserved unless the
    client gets a new wallet of the same LNbits user.

    Invariant: nothing reserved forever."""
    await replay(
        env,
        [
            Settle(currency=0, fiat="100.00"),
            Drain(),
            Resolve(orphan=0, action="attribute_to_client", target=0),
            DeleteWallet(client=0),
            TopUp(),
            Recovery(),
        ],
        seed=("10.00",),
        remedy="cancel",
        recover=paused_recovery,
    )


# ------------------------------------------------------------ the simulation's
# own check: it finds a planted bug and shrinks it to a minimal scenario.


@pytest.mark.skipif(
    os.environ.get("SATMACHINE_SIM_SELFTEST") != "1",
    reason="about 5 minutes; SATMACHINE_SIM_SELFTEST=1 runs it",
)
def test_the_simulation_catches_and_shrinks_a_planted_bug(
    env, session_loop, paused_recovery, monkeypatch
):
    """One sat too many for the first client of any split with an orphan: the
    simulation must fail, and the failure must come out as the minimal
    scenario (one seed client, one settlement) written as a regression
    test."""
    from satmachineadmin import transaction_processor as tp
    from satmachineadmin.allocation import ClientAllocation

    real = tp.distribute

    def planted(*args, **kwargs):
        plan = real(*args, **kwargs)
        if not plan.allocations or not plan.orphan_sats:
            return plan
        first = plan.allocations[0]
        bumped = ClientAllocation(
            first.client_id, first.sats + 1, first.fiat, first.capped
        )
        return replace(plan, allocations=(bumped, *plan.allocations[1:]))

    monkeypatch.setattr(tp, "distribute", planted)
    with pytest.raises(AssertionError) as failure:
        simulate(env, session_loop, paused_recovery, Stats(), monkeypatch, 10, 12)
    text = str(failure.value)
    assert "the split follows the rules" in text, text
    code = text.split("As a regression test:", 1)[1]
    assert code.count("Settle(") == 1 and code.count("),\n") <= 2, text
