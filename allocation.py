"""Pure settlement math: principal/commission split and capped allocation.

No LNbits imports and no I/O, so every rule here is easy to read and to test.
Sats are `int`; fiat is `Decimal` with cents; ratios are exact `Fraction`s.

Rounding rule (a promise to clients; the tests check each part):

* Each client's fiat share is ``a_i = b_i * min(1, fiat / sum(b))``: proportional
  to its remaining balance ``b_i`` and never above it. With ``r = P / fiat``
  nobody ever gets more than ``floor(b_i * r)`` sats.
* Balances that cover at most the cash (``sum(b) <= fiat``, the capped and the
  exact-cover case): every client whose balance is worth at least one sat is
  debited exactly ``b_i`` (it lands on 0.00) and gets ``floor(b_i * r)`` sats.
  The sub-sat fractions are the orphan's: in the exact-cover case the orphan
  fiat is 0.00 and the orphan sats are the sum of the fractions of ``b_i * r``,
  fewer than one per client and none when every ``b_i * r`` is whole.
* Balances that exceed the cash: every client first gets ``floor(a_i * r)``
  sats; the sats still unassigned go one per client by largest remainder, never
  above ``floor(b_i * r)`` and only to a client with a fraction left, so a
  client gets the floor or the ceiling of its exact share. The fiat debited is
  what the client's sats are worth at ``r``, apportioned in cents the same way
  (floor, then a cent each by largest remainder), so it is within a cent of
  that worth.
* Equal balances are treated equally: clients with equal balances always get
  equal sats and equal fiat. The largest-remainder order is by remainder, then
  by larger balance, then input order; all clients with the same balance move
  together, and when the units left cannot go to every one of them, none of
  them gets one. The hand-out goes on with the next clients, except that a unit
  never lifts a client above a larger balance that was passed over; what is
  left stays in the orphan. So a larger balance never gets fewer sats or less
  fiat than a smaller one.
* Sats and fiat go together: a client gets sats if and only if it is debited
  fiat. A client whose share rounds to 0 sats, or whose sats would be debited
  0.00 (worth less than a cent, and no cent left for it), gets no payout and
  keeps its balance; its share stays in the orphan.
* ``sum(sats_i) + commission + orphan_sats == settlement`` and
  ``sum(fiat_i) + orphan_fiat == fiat``, exactly, always; nothing is negative.

Fixed-mode clients (a daily limit; see README "Flow and fixed mode"): a client
may carry a fiat ``cap`` besides its balance, what is left of its daily
allowance. Its effective cap is ``e_i = min(b_i, cap_i)``. The shares are then
filled progressively (water-filling): ``a_i = min(e_i, lambda * b_i)`` with the
one ``lambda`` that hands out ``min(fiat, sum(e))``, so the fiat a capped client
cannot take goes to the others in proportion to their balances, and an orphan
(beyond the rounding crumbs above) exists only when every client is at its
effective cap. Every rule above holds with ``e_i`` in place of ``b_i`` where it
speaks of a cap: nobody gets more than ``floor(e_i * r)`` sats or more than
``e_i`` fiat; when the effective caps cover at most the cash, each paid client
is debited exactly ``e_i``; clients are treated equally when their balances and
their exact shares are equal. Without caps the result is exactly the flow-only
split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

try:  # messages.py is pure too; tests load this module on its own
    from .messages import MessageError
except ImportError:  # pragma: no cover
    from messages import MessageError  # type: ignore[no-redef]

CENT = Decimal("0.01")
SATS_PER_BTC = 100_000_000


class AllocationError(MessageError):
    """Inputs that cannot describe a settlement (a ValueError; its text in the
    request's language, messages.py `allocation.*`)."""


def to_fiat(value: Any) -> Decimal:
    """Any number to Decimal cents. Floats go through str() so 7.54 stays 7.54."""
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        number = Decimal(str(value))
    return number.quantize(CENT, rounding=ROUND_HALF_EVEN)


def _fraction(value: Decimal | int) -> Fraction:
    return Fraction(value)


def _round_half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def effective_commission(
    commission_percentage: Decimal, discount: Decimal | None
) -> Decimal:
    """Lamassu's effective commission: the discount (0-100) waives that share of
    the commission percentage (a fraction such as 0.055)."""
    discount = discount or Decimal(0)
    return commission_percentage * (1 - discount / 100)


@dataclass(frozen=True)
class PrincipalSplit:
    principal_sats: int
    commission_sats: int


def _check_sats(settlement_sats: int) -> None:
    if not isinstance(settlement_sats, int) or isinstance(settlement_sats, bool):
        raise AllocationError("allocation.sats_not_integer")
    if settlement_sats < 0:
        raise AllocationError("allocation.sats_negative")


def split_from_ticker(
    settlement_sats: int, fiat: Decimal, raw_ticker_price: Decimal
) -> PrincipalSplit:
    """P = min(S, round(fiat * 1e8 / ticker)): the value of the cash at the
    market price; the rest of what the customer paid is commission."""
    _check_sats(settlement_sats)
    if raw_ticker_price <= 0:
        raise AllocationError("allocation.ticker_not_positive")
    if fiat < 0:
        raise AllocationError("allocation.fiat_negative")
    principal = _round_half_up(
        _fraction(fiat) * SATS_PER_BTC / _fraction(raw_ticker_price)
    )
    principal = min(settlement_sats, principal)
    return PrincipalSplit(principal, settlement_sats - principal)


def split_from_commission(settlement_sats: int, c_eff: Decimal) -> PrincipalSplit:
    """Without the ticker: Lamassu sells at ticker * (1 - c_eff), so the cash is
    worth S * (1 - c_eff) at the market price. (The old admin's S / (1 + c)
    under-counted the commission by about 5% of it.)"""
    _check_sats(settlement_sats)
    if c_eff < 0 or c_eff >= 1:
        raise AllocationError("allocation.commission_range")
    principal = _round_half_up(settlement_sats * (1 - _fraction(c_eff)))
    principal = max(0, min(settlement_sats, principal))
    return PrincipalSplit(principal, settlement_sats - principal)


def split_reported(
    settlement_sats: int, principal_sats: int, fee_sats: int
) -> PrincipalSplit:
    """The split an ATM reports (bitSpire), checked against the amount paid."""
    _check_sats(settlement_sats)
    if principal_sats < 0 or fee_sats < 0:
        raise AllocationError("allocation.principal_fee_negative")
    if principal_sats + fee_sats != settlement_sats:
        raise AllocationError(
            "allocation.reported_mismatch",
            principal=principal_sats,
            fee=fee_sats,
            paid=settlement_sats,
        )
    return PrincipalSplit(principal_sats, fee_sats)


def lamassu_expected_crypto_atoms(
    fiat: Decimal,
    raw_ticker_price: Decimal,
    c_eff: Decimal,
    fixed_fee: Decimal | None = None,
) -> int:
    """What Lamassu charges for a cash-out: (fiat + fixed fee) at the ticker
    price less the commission, truncated down to a multiple of 100 sats."""
    rate = _fraction(raw_ticker_price) * (1 - _fraction(c_eff))
    if rate <= 0:
        raise AllocationError("allocation.rate_not_positive")
    atoms = (_fraction(fiat) + _fraction(fixed_fee or Decimal(0))) * SATS_PER_BTC
    return math.floor(atoms / rate / 100) * 100


def crypto_atoms_match(
    paid_sats: int,
    fiat: Decimal,
    raw_ticker_price: Decimal,
    c_eff: Decimal,
    fixed_fee: Decimal | None = None,
    tolerance_sats: int = 100,
) -> bool:
    """Whether a Lamassu row explains the paid amount. Lamassu versions round
    the atoms differently (truncation to 100 sats, or none), so one rounding
    step of slack is allowed."""
    expected = lamassu_expected_crypto_atoms(fiat, raw_ticker_price, c_eff, fixed_fee)
    return abs(expected - paid_sats) <= tolerance_sats


@dataclass(frozen=True)
class ClientBalance:
    client_id: str
    balance: Decimal
    # Fixed mode: what is left of the client's daily allowance (None: no cap).
    cap: Decimal | None = None


@dataclass(frozen=True)
class ClientAllocation:
    client_id: str
    sats: int
    fiat: Decimal
    capped: bool  # debited its whole balance
    # Debited all that was left of its daily allowance (fixed mode).
    limited: bool = False


@dataclass(frozen=True)
class Distribution:
    settlement_sats: int
    principal_sats: int
    commission_sats: int
    fiat_amount: Decimal
    rate: Fraction  # sats per fiat unit
    allocations: tuple[ClientAllocation, ...]
    orphan_sats: int
    orphan_fiat: Decimal
    capped: bool

    @property
    def distributed_sats(self) -> int:
        return sum(a.sats for a in self.allocations)

    @property
    def distributed_fiat(self) -> Decimal:
        return sum((a.fiat for a in self.allocations), Decimal("0.00"))

    def rate_sats_per_fiat(self) -> float:
        return float(self.rate)

    def cost_basis_fiat_per_btc(self) -> Decimal:
        if not self.principal_sats:
            return Decimal("0.00")
        value = _fraction(self.fiat_amount) * SATS_PER_BTC / self.principal_sats
        return to_fiat(Decimal(value.numerator) / Decimal(value.denominator))


def _largest_remainder(
    floors: list[int],
    remainders: list[Fraction],
    caps: list[int],
    extra: int,
    balances: list[int],
    keys: Sequence[Any] | None = None,
) -> list[int]:
    """Hand out up to `extra` units on top of `floors`, at most one per client,
    only to a client with a positive remainder and below its cap, so nobody gets
    more than the ceiling of its exact share.

    Clients with equal balances form one group (their floors, remainders and
    caps are equal by construction) and are served together: a group gets a
    unit for each member or none. Groups are served by larger remainder, then
    larger balance, then input order. A group is passed over when fewer units
    are left than it has members, or when a unit would lift it above a client
    with a larger balance that was passed over; later groups may still be
    served. Units nobody may take are not handed out: the caller leaves them in
    the orphan. So equal balances get equal amounts and a larger balance never
    gets less than a smaller one (given floors that already keep that order).

    `keys` (default: the balances) says who forms a group; with daily caps it
    is the balance with the exact share, since equal balances may then have
    different shares."""
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(keys if keys is not None else balances):
        groups.setdefault(key, []).append(i)
    order = sorted(
        groups.values(),
        key=lambda members: (-remainders[members[0]], -balances[members[0]], members),
    )
    result = list(floors)
    passed_over: list[tuple[int, int]] = []  # (balance, amount) left behind
    for members in order:
        if extra <= 0:
            break
        first = members[0]
        if not all(
            remainders[i] > 0 and result[i] < caps[i] for i in members
        ):  # nothing to add (whole share given, or at its cap)
            continue
        lifted = result[first] + 1
        if len(members) > extra or any(
            balance > balances[first] and amount < lifted
            for balance, amount in passed_over
        ):
            passed_over.append((balances[first], result[first]))
            continue
        for i in members:
            result[i] += 1
        extra -= len(members)
    return result


def distribute(
    settlement_sats: int,
    split: PrincipalSplit,
    fiat_amount: Decimal,
    balances: Sequence[ClientBalance],
) -> Distribution:
    """Split the principal among clients in proportion to their remaining
    balances, capped at each balance. See the module docstring for the rule."""
    _check_sats(settlement_sats)
    if split.principal_sats < 0 or split.commission_sats < 0:
        raise AllocationError("allocation.split_negative")
    if split.principal_sats + split.commission_sats != settlement_sats:
        raise AllocationError("allocation.split_mismatch")
    fiat_amount = to_fiat(fiat_amount)
    if fiat_amount < 0:
        raise AllocationError("allocation.fiat_negative")
    ids = [b.client_id for b in balances]
    if len(set(ids)) != len(ids):
        raise AllocationError("allocation.duplicate_clients")

    principal = split.principal_sats
    clients = [
        b
        for b in balances
        if to_fiat(b.balance) > 0 and (b.cap is None or to_fiat(b.cap) > 0)
    ]
    cents = [int(to_fiat(b.balance) / CENT) for b in clients]
    # Effective caps: the balance, or less what is left of a daily allowance.
    limits = [
        c if b.cap is None else min(c, int(to_fiat(b.cap) / CENT))
        for b, c in zip(clients, cents, strict=True)
    ]
    capped = Decimal(sum(limits)) * CENT < fiat_amount

    def empty(rate: Fraction) -> Distribution:
        return Distribution(
            settlement_sats,
            principal,
            split.commission_sats,
            fiat_amount,
            rate,
            (),
            principal,
            fiat_amount,
            capped,
        )

    if fiat_amount == 0 or principal == 0:
        rate = (
            _fraction(principal) / _fraction(fiat_amount)
            if fiat_amount
            else Fraction(0)
        )
        return empty(rate)
    rate = Fraction(principal) / _fraction(fiat_amount)
    if not clients:
        return empty(rate)

    fiat_cents = int(fiat_amount / CENT)
    covers_at_most = sum(limits) <= fiat_cents  # capped or exact cover
    cent_rate = rate / 100  # sats per cent
    # Exact fiat shares, in cents: proportional to the balances, each at most
    # its effective cap, what a capped client cannot take going to the others.
    ideal_cents = _water_fill(cents, limits, fiat_cents)
    # Who is treated alike: equal balances with equal exact shares.
    keys = list(zip(cents, ideal_cents, strict=True))

    # Sats: proportional, capped at floor(cap * rate). When the caps cover at
    # most the fiat the floors are the caps, so nothing is added: each client
    # gets floor(cap * rate).
    ideal_sats = [x * cent_rate for x in ideal_cents]
    floor_sats = [math.floor(x) for x in ideal_sats]
    caps = [math.floor(c * cent_rate) for c in limits]
    alloc_sats = _largest_remainder(
        floor_sats,
        [x - f for x, f in zip(ideal_sats, floor_sats, strict=True)],
        caps,
        principal - sum(floor_sats),
        cents,
        keys,
    )

    if covers_at_most:
        # Every paid client's whole effective cap: a balance lands on exactly
        # 0.00, a daily allowance is used up exactly.
        alloc_cents = [
            c if s > 0 else 0 for c, s in zip(limits, alloc_sats, strict=True)
        ]
    else:
        # The fiat debited is what the client's sats are worth at this rate,
        # within a cent; a client without sats is debited nothing.
        ideal_debit = [Fraction(s) / cent_rate for s in alloc_sats]
        floor_debit = [math.floor(x) for x in ideal_debit]
        alloc_cents = _largest_remainder(
            floor_debit,
            [x - f for x, f in zip(ideal_debit, floor_debit, strict=True)],
            [c if s > 0 else 0 for c, s in zip(limits, alloc_sats, strict=True)],
            fiat_cents - sum(floor_debit),
            cents,
            keys,
        )

    allocations = []
    for client, sats, fiat_c, balance_c, limit_c in zip(
        clients, alloc_sats, alloc_cents, cents, limits, strict=True
    ):
        if sats <= 0 or fiat_c <= 0:
            continue  # no sats without a debit, no debit without sats
        allocations.append(
            ClientAllocation(
                client_id=client.client_id,
                sats=sats,
                fiat=(Decimal(fiat_c) * CENT).quantize(CENT),
                capped=fiat_c == balance_c,
                limited=limit_c < balance_c and fiat_c == limit_c,
            )
        )
    distributed_sats = sum(a.sats for a in allocations)
    distributed_fiat = sum((a.fiat for a in allocations), Decimal("0.00"))
    return Distribution(
        settlement_sats=settlement_sats,
        principal_sats=principal,
        commission_sats=split.commission_sats,
        fiat_amount=fiat_amount,
        rate=rate,
        allocations=tuple(allocations),
        orphan_sats=principal - distributed_sats,
        orphan_fiat=(fiat_amount - distributed_fiat).quantize(CENT),
        capped=capped,
    )


def _water_fill(weights: list[int], limits: list[int], amount: int) -> list[Fraction]:
    """Progressive filling: ``x_i = min(limit_i, lambda * weight_i)`` with the
    one ``lambda`` for which ``sum(x) == min(amount, sum(limits))``, exactly.
    Without binding limits (limit_i == weight_i) it is the proportional share
    ``weight_i * min(1, amount / sum(weights))``."""
    if sum(limits) <= amount:
        return [Fraction(limit) for limit in limits]
    order = sorted(range(len(weights)), key=lambda i: Fraction(limits[i], weights[i]))
    left, weight = Fraction(amount), sum(weights)
    saturated: set[int] = set()
    for i in order:
        # limit_i / weight_i <= left / weight: it reaches its limit first.
        if limits[i] * weight <= left * weights[i]:
            saturated.add(i)
            left -= limits[i]
            weight -= weights[i]
        else:
            break
    level = left / weight  # weight > 0: the limits exceed the amount
    return [
        Fraction(limits[i]) if i in saturated else weights[i] * level
        for i in range(len(weights))
    ]
