"""The flow-only allocation as it was before fixed mode (#12), frozen verbatim
as the reference: without daily caps, allocation.distribute must give exactly
what this gives (tests/test_allocation_fixed.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

CENT = Decimal("0.01")
SATS_PER_BTC = 100_000_000


class AllocationError(ValueError):
    """Inputs that cannot describe a settlement."""


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
        raise AllocationError("settlement sats must be an integer")
    if settlement_sats < 0:
        raise AllocationError("settlement sats must not be negative")


def split_from_ticker(
    settlement_sats: int, fiat: Decimal, raw_ticker_price: Decimal
) -> PrincipalSplit:
    """P = min(S, round(fiat * 1e8 / ticker)): the value of the cash at the
    market price; the rest of what the customer paid is commission."""
    _check_sats(settlement_sats)
    if raw_ticker_price <= 0:
        raise AllocationError("ticker price must be positive")
    if fiat < 0:
        raise AllocationError("fiat must not be negative")
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
        raise AllocationError("effective commission must be in [0, 1)")
    principal = _round_half_up(settlement_sats * (1 - _fraction(c_eff)))
    principal = max(0, min(settlement_sats, principal))
    return PrincipalSplit(principal, settlement_sats - principal)


def split_reported(
    settlement_sats: int, principal_sats: int, fee_sats: int
) -> PrincipalSplit:
    """The split an ATM reports (bitSpire), checked against the amount paid."""
    _check_sats(settlement_sats)
    if principal_sats < 0 or fee_sats < 0:
        raise AllocationError("principal and fee must not be negative")
    if principal_sats + fee_sats != settlement_sats:
        raise AllocationError(
            f"principal {principal_sats} + fee {fee_sats} != paid {settlement_sats}"
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
        raise AllocationError("rate must be positive")
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


@dataclass(frozen=True)
class ClientAllocation:
    client_id: str
    sats: int
    fiat: Decimal
    capped: bool


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
    gets less than a smaller one (given floors that already keep that order)."""
    groups: dict[int, list[int]] = {}
    for i, balance in enumerate(balances):
        groups.setdefault(balance, []).append(i)
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
        raise AllocationError("split amounts must not be negative")
    if split.principal_sats + split.commission_sats != settlement_sats:
        raise AllocationError("principal + commission must equal the settlement")
    fiat_amount = to_fiat(fiat_amount)
    if fiat_amount < 0:
        raise AllocationError("fiat must not be negative")
    ids = [b.client_id for b in balances]
    if len(set(ids)) != len(ids):
        raise AllocationError("duplicate client ids")

    principal = split.principal_sats
    clients = [b for b in balances if to_fiat(b.balance) > 0]
    total_balance = sum((to_fiat(b.balance) for b in clients), Decimal(0))
    capped = total_balance < fiat_amount

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

    cents = [int(to_fiat(b.balance) / CENT) for b in clients]
    fiat_cents = int(fiat_amount / CENT)
    total_cents = sum(cents)
    covers_at_most = total_cents <= fiat_cents  # capped or exact cover
    factor = min(Fraction(1), Fraction(fiat_cents, total_cents))

    cent_rate = rate / 100  # sats per cent
    ideal_cents = [c * factor for c in cents]  # exact fiat shares, in cents

    # Sats: proportional to the balances, capped at floor(balance * rate). When
    # the balances cover at most the fiat the floors are the caps, so nothing
    # is added: each client gets floor(balance * rate).
    ideal_sats = [x * cent_rate for x in ideal_cents]
    floor_sats = [math.floor(x) for x in ideal_sats]
    caps = [math.floor(c * cent_rate) for c in cents]
    alloc_sats = _largest_remainder(
        floor_sats,
        [x - f for x, f in zip(ideal_sats, floor_sats, strict=True)],
        caps,
        principal - sum(floor_sats),
        cents,
    )

    if covers_at_most:
        # Every paid client's whole balance: it lands on exactly 0.00.
        alloc_cents = [
            c if s > 0 else 0 for c, s in zip(cents, alloc_sats, strict=True)
        ]
    else:
        # The fiat debited is what the client's sats are worth at this rate,
        # within a cent; a client without sats is debited nothing.
        ideal_debit = [Fraction(s) / cent_rate for s in alloc_sats]
        floor_debit = [math.floor(x) for x in ideal_debit]
        alloc_cents = _largest_remainder(
            floor_debit,
            [x - f for x, f in zip(ideal_debit, floor_debit, strict=True)],
            [c if s > 0 else 0 for c, s in zip(cents, alloc_sats, strict=True)],
            fiat_cents - sum(floor_debit),
            cents,
        )

    allocations = []
    for client, sats, fiat_c, balance_c in zip(
        clients, alloc_sats, alloc_cents, cents, strict=True
    ):
        if sats <= 0 or fiat_c <= 0:
            continue  # no sats without a debit, no debit without sats
        allocations.append(
            ClientAllocation(
                client_id=client.client_id,
                sats=sats,
                fiat=(Decimal(fiat_c) * CENT).quantize(CENT),
                capped=fiat_c == balance_c,
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
