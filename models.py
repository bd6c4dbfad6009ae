"""Pydantic (v1) models: rows of the `satoshimachine` schema and API payloads.

Fiat is `Decimal` with cents everywhere; sats are `int`. Rows written by the
companion client extension are not validated there, so the row models accept
whatever strings they find (modes, statuses) and never crash on them.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Extra, Field, validator

from .allocation import to_fiat
from .fixed_mode import as_utc
from .messages import CATALOG, Message, MessageError, current_language, localized

# ISO 4217 codes are three upper-case letters; the deployment uses GTQ.
CURRENCY_REGEX = r"^[A-Z]{3}$"
MAX_FIAT = Decimal("1000000000")  # one billion: far above any ATM deposit
# The most a fixed-mode client may ask per day when the operator set no
# maximum: what the client extension falls back to as well.
DEFAULT_CLIENT_LIMIT = Decimal("2000")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def moment_utc(value: Any) -> datetime | None:
    """as_utc for a value read from a row (ours, LNbits' or Lamassu's): a
    datetime, epoch seconds, or None when it is neither."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    try:
        return datetime.fromtimestamp(float(value), timezone.utc)
    except (TypeError, ValueError, OverflowError):
        return None


def stored_text(
    value: Message | str | None, limit: int = 500
) -> tuple[str | None, str | None]:
    """A text the code writes to the database: (English for its old column,
    the message as JSON for its `_msg` column beside it). A plain string (an
    error LNbits raised) is stored as it is, with no message (m017)."""
    if value is None:
        return None, None
    if isinstance(value, Message):
        return value.render("en")[:limit], value.to_json()
    return value[:limit], None


def stored_message(english: str | None, stored: str | None) -> Message | str | None:
    """A stored text as a parameter of another message: the message when one
    was stored with it (rendered in the reader's language), else its English."""
    return Message.from_json(stored) or english


def _fiat_or_none(value: Any) -> Decimal | None:
    return None if value is None else to_fiat(value)


def finite_fiat(value: Any) -> Decimal | None:
    """An amount as stored by whoever wrote the row, in cents; None when it
    is no finite amount. The client extension and other software write the
    shared tables unvalidated: SQLite keeps any text in a numeric column
    ('abc', 'NaN', ' ') and turns '1e400' into infinity, PostgreSQL's NUMERIC
    keeps NaN. Such a value is read as no amount (a daily limit: none, the
    client needs the operator, client_attention; a balance: nothing), never
    an error that stops reading every client (the clients list, each split,
    each delivery slot)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = to_fiat(value.strip() if isinstance(value, str) else value)
    except (ArithmeticError, ValueError, TypeError):
        return None
    return amount if amount.is_finite() else None


class FiatAmount(Decimal):
    """A fiat amount: positive, at most two decimals, bounded."""

    @classmethod
    def __get_validators__(cls):
        yield cls.validate

    @classmethod
    def validate(cls, value: Any) -> Decimal:
        # MessageError is a ValueError: pydantic reports its text, in the
        # request's language.
        if isinstance(value, bool):
            raise MessageError("field.not_a_number")
        try:
            amount = Decimal(str(value).strip())
        except Exception as exc:
            raise MessageError("field.not_a_number") from exc
        if not amount.is_finite():
            raise MessageError("field.not_finite")
        if amount <= 0:
            raise MessageError("field.not_positive")
        if amount > MAX_FIAT:
            raise MessageError("field.at_most", maximum=MAX_FIAT)
        if amount != amount.quantize(Decimal("0.01")):
            raise MessageError("field.two_decimals")
        return amount.quantize(Decimal("0.01"))

    @classmethod
    def __modify_schema__(cls, field_schema: dict) -> None:
        field_schema.update(
            type="number", exclusiveMinimum=0, maximum=float(MAX_FIAT), multipleOf=0.01
        )


# --------------------------------------------------------------------------- enums


class DcaMode(str, Enum):
    flow = "flow"
    fixed = "fixed"


class ClientStatus(str, Enum):
    active = "active"
    inactive = "inactive"


class FixedDelivery(str, Enum):
    """When fixed-mode allocations are delivered (paid to the client)."""

    on_settlement = "on_settlement"  # as each settlement is split
    daily = "daily"  # once a day at fixed_delivery_time (HH:MM, operator's zone)
    times_per_day = "times_per_day"  # fixed_delivery_times slots, evenly spaced


class DepositStatus(str, Enum):
    pending = "pending"
    confirmed = "confirmed"
    cancelled = "cancelled"


class PayoutStatus(str, Enum):
    pending = "pending"
    confirmed = "confirmed"
    failed = "failed"
    cancelled = "cancelled"  # by the operator: never paid, reserves nothing


class SettlementStatus(str, Enum):
    pending = "pending"  # recorded, cash-out not looked up yet
    waiting_data = "waiting_data"  # no source explains it yet
    waiting_dispense = "waiting_dispense"  # cash-out found, cash not out yet
    flagged = "flagged"  # needs the operator (invalid data, failed dispense)
    dismissed = "dismissed"  # operator: not an ATM settlement
    ready = "ready"  # cash-out data known, not yet split
    distributing = "distributing"  # split recorded, payouts under way
    completed = "completed"  # every payout and the commission done
    # Everything paid but fixed-mode payouts waiting for their delivery slot
    # (reserved from the clients' balances, the sats in the source wallet).
    scheduled = "scheduled"
    payout_failed = "payout_failed"  # some payout failed; retryable
    # Still waiting for cash-out data after the configured window (the ATM's
    # redeem window): no longer looked up; the operator enters or dismisses.
    stale = "stale"
    # Paid into the source wallet before this extension first ran (the upgrade
    # line, see upgrade_line.py): recorded, never split unless the operator
    # processes it (-> pending) or dismisses it.
    before_upgrade = "before_upgrade"


# A settlement in one of these has its split decided: its figures count in
# every total (the overview, per day, per machine, recent prices).
SPLIT_STATUSES = (
    SettlementStatus.distributing.value,
    SettlementStatus.completed.value,
    SettlementStatus.payout_failed.value,
    SettlementStatus.scheduled.value,
)


class ReconciliationStatus(str, Enum):
    open = "open"
    resolving = "resolving"
    resolved = "resolved"


class ResolutionAction(str, Enum):
    operator_funds = "operator_funds"
    send_to_wallet = "send_to_wallet"
    attribute_to_client = "attribute_to_client"


# ------------------------------------------------------------------------- clients


class DcaClient(BaseModel):
    id: str
    user_id: str
    wallet_id: str
    username: str | None = None
    dca_mode: str = "flow"
    fixed_mode_daily_limit: Decimal | None = None
    status: str = "active"
    created_at: datetime
    updated_at: datetime
    # When the operator last reviewed this row (NULL: new, e.g. inserted by the
    # client extension on its own).
    reviewed_at: datetime | None = None
    # The client asked to be told (through their own LNbits notification
    # settings) when a balance reaches 0.00. Off unless set.
    notify_balance_empty: bool | None = False

    _limit = validator("fixed_mode_daily_limit", pre=True, allow_reuse=True)(
        finite_fiat
    )


def client_attention(client: DcaClient) -> str | None:
    """Why a client is never paid although it may look like it should be: a
    mode or status outside the vocabulary (the client extension stores
    whatever it is given)."""
    if client.dca_mode not in {m.value for m in DcaMode}:
        return f"unknown mode {client.dca_mode!r}: never paid; set flow or fixed"
    if client.status not in {s.value for s in ClientStatus}:
        return f"unknown status {client.status!r}: never paid; set active"
    limit = client.fixed_mode_daily_limit
    if client.dca_mode == DcaMode.fixed.value and (not limit or limit <= 0):
        return "fixed mode without a daily limit: never paid; set a limit"
    return None


class CreateDcaClientData(BaseModel):
    """Register an existing LNbits wallet as a DCA client (for operators who do
    not run the companion client extension)."""

    wallet_id: str = Field(..., min_length=1, max_length=64)
    username: str | None = Field(None, max_length=100)
    dca_mode: DcaMode = DcaMode.flow
    fixed_mode_daily_limit: FiatAmount | None = None


class UpdateDcaClientData(BaseModel):
    username: str | None = Field(None, max_length=100)
    # A wallet of the same LNbits user (e.g. after they deleted the old one):
    # unfinished payouts then go to it on retry, never to the old one.
    wallet_id: str | None = Field(None, min_length=1, max_length=64)
    dca_mode: DcaMode | None = None
    fixed_mode_daily_limit: FiatAmount | None = None
    status: ClientStatus | None = None
    notify_balance_empty: bool | None = None


class ClientStatusData(BaseModel):
    status: ClientStatus


class ClientBalanceSummary(BaseModel):
    client_id: str
    total_deposits: Decimal  # confirmed deposits
    total_payments: Decimal  # fiat already paid out (confirmed)
    reserved_fiat: Decimal = Decimal("0")  # pending or failed payouts awaiting retry
    remaining_balance: Decimal
    total_sats: int = 0
    currency: str


class ClientSummary(DcaClient):
    """A client with its figures, for the clients table (one query for all)."""

    currency: str | None = None
    confirmed_deposits: Decimal = Decimal("0")
    pending_deposits: Decimal = Decimal("0")
    distributed_fiat: Decimal = Decimal("0")
    distributed_sats: int = 0
    reserved_fiat: Decimal = Decimal("0")
    remaining_balance: Decimal = Decimal("0")
    wallet_name: str | None = None
    attention: str | None = None  # see client_attention
    is_new: bool = False  # never reviewed by the operator
    # Fixed mode: today's (operator's day) fixed payouts, paid or scheduled,
    # and what is left of the daily limit (in the limit currency).
    fixed_used_today: Decimal | None = None
    fixed_allowance_left: Decimal | None = None
    fixed_limit_currency: str | None = None
    # The figures above are in `currency`; these are every currency's.
    balances: list[CurrencyFigures] = []


class CurrencyFigures(BaseModel):
    currency: str
    confirmed_deposits: Decimal
    pending_deposits: Decimal
    distributed_fiat: Decimal
    distributed_sats: int
    reserved_fiat: Decimal
    remaining_balance: Decimal


ClientSummary.update_forward_refs(CurrencyFigures=CurrencyFigures)


# ------------------------------------------------------------------------ deposits


class DcaDeposit(BaseModel):
    id: str
    client_id: str
    amount: Decimal
    currency: str = "GTQ"
    status: str = "pending"
    notes: str | None = None
    created_at: datetime
    confirmed_at: datetime | None = None

    _fiat = validator("amount", pre=True, allow_reuse=True)(to_fiat)


def _known_currency(value: str | None) -> str | None:
    """An ISO 4217 code LNbits knows (its list of supported fiat currencies):
    AAA or XXX would open a balance no settlement can ever match."""
    from lnbits.utils.exchange_rates import currencies

    if value is not None and value not in currencies:
        raise MessageError("field.unknown_currency", value=value)
    return value


class DepositView(DcaDeposit):
    """A deposit with its client's name, for the deposits table."""

    username: str | None = None


class DistributedRow(BaseModel):
    paid_at: datetime
    distributed_sats: int


class CreateDepositData(BaseModel):
    client_id: str = Field(..., min_length=1, max_length=64)
    amount: FiatAmount
    currency: str = Field("GTQ", regex=CURRENCY_REGEX)
    notes: str | None = Field(None, max_length=500)

    _currency = validator("currency", allow_reuse=True)(_known_currency)


class UpdateDepositData(BaseModel):
    """Edit a pending deposit. Unknown fields are refused (a misspelt
    `ammount` must not answer 200 and change nothing)."""

    amount: FiatAmount | None = None
    currency: str | None = Field(None, regex=CURRENCY_REGEX)
    notes: str | None = Field(None, max_length=500)

    _currency = validator("currency", allow_reuse=True)(_known_currency)

    class Config:
        extra = Extra.forbid


class UpdateDepositStatusData(BaseModel):
    status: DepositStatus
    notes: str | None = Field(None, max_length=500)


# ------------------------------------------------------------------------ payments


class DcaPayment(BaseModel):
    id: str
    client_id: str
    amount_sats: int
    amount_fiat: Decimal
    exchange_rate: float
    transaction_type: str
    lamassu_transaction_id: str | None = None
    payment_hash: str | None = None
    status: str = "pending"
    created_at: datetime
    transaction_time: datetime | None = None
    settlement_id: str | None = None
    bolt11: str | None = None
    error: str | None = None
    error_msg: str | None = None  # `error` as a message (m017, messages.py)
    attempts: int = 0
    updated_at: datetime | None = None
    currency: str | None = None  # of amount_fiat; NULL only before m008
    # Fixed mode: a scheduled payout waits until this time (NULL: pay at once)
    # and is paid once a delivery slot has released it (delivery_slot set).
    deliver_after: datetime | None = None
    delivery_slot: str | None = None

    _fiat = validator("amount_fiat", pre=True, allow_reuse=True)(to_fiat)

    def for_reader(self):
        """As shown to the operator: `error` in the request's language."""
        return self.copy(update={"error": localized(self.error, self.error_msg)})

    @property
    def scheduled(self) -> bool:
        """Waiting for its delivery slot: reserved, never paid before it."""
        return (
            self.status == PayoutStatus.pending.value
            and self.deliver_after is not None
            and self.delivery_slot is None
        )


class DeliverAfterRow(BaseModel):
    deliver_after: datetime


class DeliverySlot(BaseModel):
    """A fixed-mode delivery slot: created once (its key), then done."""

    id: str  # slot key, e.g. fixed:2026-11-27T18:00:00Z
    due_at: datetime
    status: str = "claimed"  # claimed -> done
    payouts: int = 0
    claimed_at: datetime
    done_at: datetime | None = None


class PayoutView(DcaPayment):
    """A payout with who it went to, for settlement detail and CSV export."""

    username: str | None = None
    wallet_id: str | None = None
    device_id: str | None = None  # the settlement's machine (#14)
    machine_name: str | None = None


# --------------------------------------------------------------------- settlements


class Settlement(BaseModel):
    id: str
    payment_hash: str
    wallet_id: str
    amount_sats: int
    bolt11: str | None = None
    memo: str | None = None
    paid_at: datetime
    status: str = SettlementStatus.pending.value
    status_detail: str | None = None
    # The detail as a message (m017, messages.py): `status_detail` keeps its
    # English for older readers; the API renders this in the reader's language.
    status_detail_msg: str | None = None
    data_source: str | None = None
    fiat_amount: Decimal | None = None
    fiat_code: str | None = None
    principal_sats: int | None = None
    commission_sats: int | None = None
    orphan_sats: int | None = None
    orphan_fiat: Decimal | None = None
    distributed_sats: int | None = None
    distributed_fiat: Decimal | None = None
    exchange_rate: float | None = None  # sats per fiat unit, for display
    commission_percentage: float | None = None
    discount: float | None = None
    reported_fee_sats: int | None = None
    lamassu_transaction_id: str | None = None
    device_id: str | None = None
    atm_txid: str | None = None
    cash_out_time: datetime | None = None
    cash_out_data: str | None = None
    commission_wallet_id: str | None = None
    commission_status: str | None = None
    commission_bolt11: str | None = None
    commission_payment_hash: str | None = None
    commission_error: str | None = None
    lookup_attempts: int = 0
    last_lookup_at: datetime | None = None
    reviewed_by: str | None = None
    review_note: str | None = None
    created_at: datetime
    updated_at: datetime

    _fiat = validator(
        "fiat_amount", "orphan_fiat", "distributed_fiat", pre=True, allow_reuse=True
    )(_fiat_or_none)

    def set_detail(self, detail: Message | str | None) -> None:
        """Set the status detail: English in `status_detail`, the message
        beside it."""
        self.status_detail, self.status_detail_msg = stored_text(detail)

    def detail(self) -> Message | str | None:
        """The status detail as stored, to be part of another message."""
        return stored_message(self.status_detail, self.status_detail_msg)

    def for_reader(self):
        """As shown to the operator: `status_detail` in the request's language
        (a row written before m017 keeps its English)."""
        return self.copy(
            update={
                "status_detail": localized(self.status_detail, self.status_detail_msg)
            }
        )


class SettlementView(Settlement):
    """A settlement with its machine's name, for lists and CSV."""

    machine_name: str | None = None


class SettlementDetail(Settlement):
    payouts: list[PayoutView] = []
    reconciliation: Reconciliation | None = None
    commission_payouts: list[CommissionPayout] = []
    machine_name: str | None = None


class TransactionView(BaseModel):
    """Parity shape of the old `/transactions` rows: the old extension's
    `lamassu_transactions` (source "legacy") and this one's settlements
    (source "settlement") in one list, with the old field names."""

    id: str
    lamassu_transaction_id: str | None = None
    fiat_amount: Decimal | None = None
    crypto_amount: int
    commission_percentage: float | None = None
    discount: float | None = None
    effective_commission: float | None = None
    commission_amount_sats: int | None = None
    base_amount_sats: int | None = None
    exchange_rate: float | None = None
    crypto_code: str | None = None
    fiat_code: str | None = None
    device_id: str | None = None
    transaction_time: datetime
    processed_at: datetime | None = None
    clients_count: int = 0
    distributions_total_sats: int = 0
    source: str
    status: str

    _fiat = validator("fiat_amount", pre=True, allow_reuse=True)(_fiat_or_none)


class DistributionView(BaseModel):
    """Parity shape of the old `/transactions/{id}/distributions` items."""

    payment_id: str
    client_id: str
    client_username: str | None = None
    client_user_id: str | None = None
    amount_sats: int
    amount_fiat: Decimal
    exchange_rate: float | None = None
    status: str
    created_at: datetime

    _fiat = validator("amount_fiat", pre=True, allow_reuse=True)(to_fiat)


class ManualCashOutData(BaseModel):
    """Cash-out data entered by the operator for a settlement no source explains."""

    fiat_amount: FiatAmount
    fiat_code: str = Field("GTQ", regex=CURRENCY_REGEX)
    # Either the ATM's split (principal) or what it is computed from.
    principal_sats: int | None = Field(None, ge=0)
    commission_percentage: Decimal | None = Field(None, ge=0, lt=1)
    discount: Decimal | None = Field(None, ge=0, le=100)
    raw_ticker_price: Decimal | None = Field(None, gt=0)
    lamassu_transaction_id: str | None = Field(None, max_length=100)
    device_id: str | None = Field(None, max_length=200)
    note: str | None = Field(None, max_length=500)


class DismissSettlementData(BaseModel):
    reason: str = Field(..., min_length=3, max_length=500)


class TestTransactionData(BaseModel):
    """A dry run: show how a settlement would be split, moving nothing."""

    amount_sats: int = Field(..., gt=0, le=2_100_000_000_000_000)
    fiat_amount: FiatAmount
    fiat_code: str = Field("GTQ", regex=CURRENCY_REGEX)
    commission_percentage: Decimal = Field(Decimal("0.055"), ge=0, lt=1)
    discount: Decimal = Field(Decimal("0"), ge=0, le=100)
    raw_ticker_price: Decimal | None = Field(None, gt=0)
    # The machine: its commission recipients, if it has its own (#14).
    device_id: str | None = Field(None, max_length=200)


# ----------------------------------------------------------------- reconciliations


class Reconciliation(BaseModel):
    id: str
    settlement_id: str
    orphan_sats: int
    orphan_fiat: Decimal
    fiat_code: str
    exchange_rate: float
    status: str = ReconciliationStatus.open.value
    resolution: str | None = None
    target_wallet_id: str | None = None
    target_client_id: str | None = None
    deposit_id: str | None = None
    bolt11: str | None = None
    payment_hash: str | None = None
    error: str | None = None
    note: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    payout_id: str | None = None  # the attribution's payout
    error_msg: str | None = None  # `error` as a message (m017, messages.py)

    def for_reader(self) -> Reconciliation:
        """As shown to the operator: `error` in the request's language."""
        return self.copy(update={"error": localized(self.error, self.error_msg)})

    # 'split': what the split left; 'payout:<id>': a payout cancelled after
    # the settlement's first orphan was resolved.
    origin: str = "split"

    _fiat = validator("orphan_fiat", pre=True, allow_reuse=True)(to_fiat)


class ResolveReconciliationData(BaseModel):
    action: ResolutionAction
    wallet_id: str | None = Field(None, min_length=1, max_length=64)
    client_id: str | None = Field(None, min_length=1, max_length=64)
    note: str | None = Field(None, max_length=500)


# -------------------------------------------------------------------------- audit


class AuditEntry(BaseModel):
    id: str
    entity: str
    entity_id: str
    action: str  # a code: the dashboard shows it in words (history.actions)
    actor: str | None = None
    details: str | None = None  # JSON, as written
    created_at: datetime
    # `details` in words, in the reader's language (audit_details_text): set
    # when read for the API, never stored.
    details_text: str | None = Field(None, no_database=True)


def audit_details_text(details: str | None) -> str | None:
    """An audit entry's details (a JSON object) in words, in the language of
    the request: each field by its name in the reader's language (the names
    in messages.py's `history.field.*`; any other as it is), a text the code
    wrote as its message where one was stored beside it (`<field>_msg`).
    Typed texts (notes, reasons) and ids are shown as they are."""
    try:
        data = json.loads(details) if details else None
    except ValueError:
        return details
    if not isinstance(data, dict):
        return details
    parts = []
    for key, value in data.items():
        if key.endswith("_msg") or value in (None, "", [], {}):
            continue
        if isinstance(value, str) and data.get(f"{key}_msg"):
            value = localized(value, data[f"{key}_msg"])
        parts.append(f"{_field_name(key)}: {_plain(value)}")
    return "; ".join(parts) or None


def _field_name(key: str) -> str:
    code = f"history.field.{key}"
    return Message(code).render() if code in CATALOG else key


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{_field_name(str(k))} {_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    return str(value)


# ------------------------------------------------------------------------- config


class LamassuConfig(BaseModel):
    """The config row as stored. Contains secrets: never return it from the API."""

    id: str
    host: str = ""
    port: int = 5432
    database_name: str = ""
    username: str = ""
    password: str = ""
    source_wallet_id: str | None = None
    commission_wallet_id: str | None = None
    is_active: bool = True
    test_connection_last: datetime | None = None
    test_connection_success: bool | None = None
    last_poll_time: datetime | None = None
    last_successful_poll: datetime | None = None
    use_ssh_tunnel: bool = False
    ssh_host: str | None = None
    ssh_port: int = 22
    ssh_username: str | None = None
    ssh_password: str | None = None
    ssh_private_key: str | None = None
    ssh_known_hosts: str | None = None
    max_daily_limit: Decimal | None = None
    limit_currency: str | None = None
    expected_commission_percentage: float | None = None
    waiting_window_hours: int = 24
    rate_tolerance_percent: float = 10.0
    scan_checkpoint: datetime | None = None
    # Fixed mode (m014): what "a day" is, and when allocations are delivered.
    time_zone: str | None = None  # IANA name; None: the LNbits server's
    fixed_delivery: str = FixedDelivery.on_settlement.value
    fixed_delivery_time: str | None = None  # "HH:MM" for daily
    fixed_delivery_times: int | None = None  # slots per day for times_per_day
    created_at: datetime
    updated_at: datetime

    _fiat = validator("max_daily_limit", pre=True, allow_reuse=True)(_fiat_or_none)

    @property
    def lamassu_configured(self) -> bool:
        return bool(self.host and self.database_name and self.username)

    def public(self) -> PublicLamassuConfig:
        data = self.dict(
            exclude={"password", "ssh_password", "ssh_private_key", "scan_checkpoint"}
        )
        return PublicLamassuConfig(
            **data,
            password_set=bool(self.password),
            ssh_password_set=bool(self.ssh_password),
            ssh_private_key_set=bool(self.ssh_private_key),
            lamassu_configured=self.lamassu_configured,
            ssh_tunnel_unavailable=_ssh_tunnel_unavailable(),
            effective_time_zone=self.zone_name,
            effective_max_daily_limit=self.max_limit,
        )

    @property
    def zone_name(self) -> str:
        from .fixed_mode import server_time_zone

        return self.time_zone or server_time_zone()

    @property
    def max_limit(self) -> Decimal:
        return self.max_daily_limit or DEFAULT_CLIENT_LIMIT

    @property
    def limit_code(self) -> str:
        return self.limit_currency or "GTQ"


def _ssh_tunnel_unavailable() -> str | None:
    """Why the SSH tunnel cannot be used on this LNbits (its optional package
    is missing), or None."""
    from .lamassu import LamassuError, require_asyncssh

    try:
        require_asyncssh()
    except LamassuError as exc:
        return exc.message.render(current_language())  # read live: reader's language
    return None


class PublicLamassuConfig(BaseModel):
    """The config as the API shows it: secrets are write-only ("set"/"not set")."""

    id: str
    host: str
    port: int
    database_name: str
    username: str
    password_set: bool
    source_wallet_id: str | None
    commission_wallet_id: str | None
    is_active: bool
    test_connection_last: datetime | None
    test_connection_success: bool | None
    last_poll_time: datetime | None
    last_successful_poll: datetime | None
    use_ssh_tunnel: bool
    ssh_host: str | None
    ssh_port: int
    ssh_username: str | None
    ssh_password_set: bool
    ssh_private_key_set: bool
    ssh_known_hosts: str | None
    max_daily_limit: Decimal | None
    limit_currency: str | None
    expected_commission_percentage: float | None
    waiting_window_hours: int = 24
    rate_tolerance_percent: float = 10.0
    time_zone: str | None = None
    fixed_delivery: str = FixedDelivery.on_settlement.value
    fixed_delivery_time: str | None = None
    fixed_delivery_times: int | None = None
    # The zone in force (time_zone, or the server's) and the max daily limit
    # in force (max_daily_limit, or the default the client extension knows).
    effective_time_zone: str = "UTC"
    effective_max_daily_limit: Decimal = Decimal("2000")
    lamassu_configured: bool
    ssh_tunnel_unavailable: str | None = None
    created_at: datetime
    updated_at: datetime


class _ConfigFields(BaseModel):
    host: str | None = Field(None, max_length=255)
    port: int | None = Field(None, ge=1, le=65535)
    database_name: str | None = Field(None, max_length=100)
    username: str | None = Field(None, max_length=100)
    password: str | None = Field(None, max_length=500)
    source_wallet_id: str | None = Field(None, max_length=64)
    commission_wallet_id: str | None = Field(None, max_length=64)
    use_ssh_tunnel: bool | None = None
    ssh_host: str | None = Field(None, max_length=255)
    ssh_port: int | None = Field(None, ge=1, le=65535)
    ssh_username: str | None = Field(None, max_length=100)
    ssh_password: str | None = Field(None, max_length=500)
    ssh_private_key: str | None = Field(None, max_length=20000)
    ssh_known_hosts: str | None = Field(None, max_length=20000)
    max_daily_limit: FiatAmount | None = None
    limit_currency: str | None = Field(None, regex=CURRENCY_REGEX)
    expected_commission_percentage: float | None = Field(None, ge=0, lt=1)
    # How long a settlement may wait for its cash-out data before it is stale.
    waiting_window_hours: int | None = Field(None, ge=1, le=24 * 30)
    # How far a cash-out's price may be from the independent price (percent).
    rate_tolerance_percent: float | None = Field(None, ge=0.1, le=100)
    # Fixed mode: the operator's time zone (IANA name, e.g.
    # America/Guatemala) and the delivery schedule.
    time_zone: str | None = Field(None, max_length=64)
    fixed_delivery: FixedDelivery | None = None
    fixed_delivery_time: str | None = Field(
        None, regex=r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
    )
    fixed_delivery_times: int | None = Field(None, ge=1, le=48)

    @validator("time_zone")
    def _known_zone(cls, value: str | None) -> str | None:  # noqa: N805
        if value:
            from zoneinfo import ZoneInfo

            try:
                ZoneInfo(value)
            except Exception as exc:
                raise MessageError("field.unknown_time_zone", value=value) from exc
        return value or None


class CreateLamassuConfigData(_ConfigFields):
    """Create (or replace) the configuration. Everything is optional so an
    operator without a Lamassu database (e.g. bitSpire) can set wallets only."""


class UpdateLamassuConfigData(_ConfigFields):
    """Partial update. A secret left out (or null) keeps its stored value; an
    empty string clears it."""

    is_active: bool | None = None


class ClientLimits(BaseModel):
    max_daily_limit_gtq: float
    currency: str


# ------------------------------------------------------------------------- alerts


class Alert(BaseModel):
    """One condition the operator (or, for `audience` client, a client) was
    told about: open while it holds, cleared when it no longer does."""

    id: str
    kind: str
    subject: str
    audience: str = "operator"
    title: str  # in English (as stored before m018; what older readers see)
    message: str
    opened_at: datetime
    last_seen_at: datetime | None = None
    cleared_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    sent_at: datetime | None = None
    cleared_sent_at: datetime | None = None
    # The title and message as messages (messages.py, JSON; m018): the API
    # returns `title` and `message` rendered from them in the reader's
    # language. None on rows written before.
    title_msg: str | None = None
    message_msg: str | None = None


class AlertPage(BaseModel):
    data: list[Alert]
    total: int


class AlertSettings(BaseModel):
    """Per-alert switches and thresholds (Configuration). Fiat thresholds are
    in the units of each currency they are compared in."""

    orphan_new: bool = True
    orphan_old: bool = True
    orphan_max_age_hours: int = Field(24, ge=1, le=24 * 365)
    settlement_flagged: bool = True
    settlement_waiting: bool = True
    settlement_waiting_minutes: int = Field(60, ge=1, le=60 * 24 * 30)
    payout_failed: bool = True
    payout_failed_attempts: int = Field(3, ge=1, le=1000)
    payout_uncovered: bool = True
    commission_failed: bool = True
    orphan_failed: bool = True
    lamassu_down: bool = True
    lamassu_down_minutes: int = Field(15, ge=1, le=60 * 24 * 7)
    missed_payment: bool = True
    drift_untracked: bool = True
    drift_untracked_threshold: FiatAmount = Field(FiatAmount("500"))
    drift_orphan_week: bool = True
    drift_orphan_week_threshold: FiatAmount = Field(FiatAmount("500"))
    client_notices: bool = True
    # More new alerts than this at once are sent as one summary.
    digest_after: int = Field(3, ge=1, le=100)
    # The language of what is sent (LNbits' notifications to the operator and
    # the clients' notices): a notification answers no request to take it from.
    language: Literal["en", "es"] = "en"

    class Config:
        extra = Extra.ignore


class UpdateAlertSettings(BaseModel):
    """Partial update of AlertSettings (absent: unchanged)."""

    orphan_new: bool | None = None
    orphan_old: bool | None = None
    orphan_max_age_hours: int | None = Field(None, ge=1, le=24 * 365)
    settlement_flagged: bool | None = None
    settlement_waiting: bool | None = None
    settlement_waiting_minutes: int | None = Field(None, ge=1, le=60 * 24 * 30)
    payout_failed: bool | None = None
    payout_failed_attempts: int | None = Field(None, ge=1, le=1000)
    payout_uncovered: bool | None = None
    commission_failed: bool | None = None
    orphan_failed: bool | None = None
    lamassu_down: bool | None = None
    lamassu_down_minutes: int | None = Field(None, ge=1, le=60 * 24 * 7)
    missed_payment: bool | None = None
    drift_untracked: bool | None = None
    drift_untracked_threshold: FiatAmount | None = None
    drift_orphan_week: bool | None = None
    drift_orphan_week_threshold: FiatAmount | None = None
    client_notices: bool | None = None
    digest_after: int | None = Field(None, ge=1, le=100)
    language: Literal["en", "es"] | None = None

    class Config:
        extra = Extra.forbid


# ------------------------------------------------------ machines, commission (#14)


class Machine(BaseModel):
    """An ATM: its device id (Lamassu device_id, bitSpire machine_npub, or typed
    by hand), the operator's name and location for it, and the source wallet
    its Lightning payments arrive in. New (reviewed_at NULL) until the operator
    names it; nothing waits on that."""

    id: str
    device_id: str
    name: str | None = None
    location: str | None = None
    source_wallet_id: str | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    reviewed_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class MachineFigures(BaseModel):
    settlements: int = 0
    settled_sats: int = 0
    commission_sats: int = 0
    distributed_sats: int = 0
    open_orphan_sats: int = 0
    waiting: int = 0


class MachineView(Machine):
    is_new: bool = False
    figures: MachineFigures = MachineFigures()
    commission_recipients: list[CommissionRecipient] = []


class CreateMachineData(BaseModel):
    device_id: str = Field(..., min_length=1, max_length=200)
    name: str | None = Field(None, max_length=100)
    location: str | None = Field(None, max_length=200)
    source_wallet_id: str | None = Field(None, max_length=64)


class UpdateMachineData(BaseModel):
    name: str | None = Field(None, max_length=100)
    location: str | None = Field(None, max_length=200)
    source_wallet_id: str | None = Field(None, max_length=64)


class CommissionRecipient(BaseModel):
    id: str
    machine_id: str = ""  # '' : the global set
    wallet_id: str
    percent: str  # exact decimal text, e.g. "33.3333"
    label: str | None = None
    position: int = 0
    created_at: datetime
    updated_at: datetime


class RecipientInput(BaseModel):
    wallet_id: str = Field(..., min_length=1, max_length=64)
    # Text or number; exact, at most 4 decimal places (commission_split.py).
    percent: str | int | float = Field(...)
    label: str | None = Field(None, max_length=100)


class SetRecipientsData(BaseModel):
    """The whole set at once (percentages adding up to exactly 100), or an
    empty list: for a machine, use the global set; globally, no split (the
    configured commission wallet, if any, takes it all)."""

    recipients: list[RecipientInput] = Field(..., max_items=20)


class CommissionPayout(BaseModel):
    """One part of a settlement's commission, paid like a client payout."""

    id: str
    settlement_id: str
    position: int = 0
    recipient_id: str | None = None
    wallet_id: str
    label: str | None = None
    percent: str  # exact decimal text
    amount_sats: int
    status: str = "pending"  # pending, confirmed, failed, kept
    bolt11: str | None = None
    payment_hash: str | None = None
    error: str | None = None
    attempts: int = 0
    created_at: datetime
    updated_at: datetime
    error_msg: str | None = None  # `error` as a message (m017, messages.py)

    def for_reader(self) -> CommissionPayout:
        """As shown to the operator: `error` in the request's language."""
        return self.copy(update={"error": localized(self.error, self.error_msg)})


class CommissionPart(BaseModel):
    """A part as the dry run shows it."""

    wallet_id: str
    label: str | None = None
    percent: str
    sats: int


class ReconciliationView(Reconciliation):
    device_id: str | None = None
    machine_name: str | None = None


# ------------------------------------------------------------- API documentation


class ErrorResponse(BaseModel):
    """Every 4xx: a message, or (400 for a malformed request) LNbits' list of
    validation errors, each with `loc` and `msg`."""

    detail: str | list[dict[str, Any]]


# The error answers every operator endpoint may give, for the OpenAPI schema:
# `APIRouter(..., responses=API_ERROR_RESPONSES)`.
API_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid input"},
    401: {"model": ErrorResponse, "description": "No or unknown credentials"},
    403: {"model": ErrorResponse, "description": "Not an admin, or a read-only key"},
    404: {"model": ErrorResponse, "description": "Not found"},
    409: {"model": ErrorResponse, "description": "Conflicts with the current state"},
}


class PayoutPage(BaseModel):
    data: list[PayoutView]
    total: int


class SettlementPage(BaseModel):
    data: list[SettlementView]
    total: int


class ReconciliationPage(BaseModel):
    data: list[ReconciliationView]
    total: int


class SuccessResponse(BaseModel):
    success: bool


class Summary(BaseModel):
    """Headline figures for the overview."""

    deposits_confirmed: Decimal
    deposits_pending: Decimal
    distributed_fiat: Decimal
    distributed_sats: int
    payouts_confirmed: int
    payouts_failed: int
    legacy_unfinished_payouts: int = 0
    settled_sats: int
    commission_sats: int
    settlements_processed: int
    open_orphan_sats: int
    open_orphan_fiat: Decimal
    open_orphans: int
    source_wallet_balance_sats: int | None = None
    settlements_by_status: dict[str, int] = {}
    listener: dict[str, Any] = {}
    recovery: dict[str, Any] = {}
    # Why the cross-process money lock cannot be trusted here (locks.py).
    lock_problem: str | None = None
    last_poll_time: datetime | None = None
    last_successful_poll: datetime | None = None

    class Config:
        extra = Extra.allow  # a figure added later is served before it is documented


SettlementDetail.update_forward_refs(
    Reconciliation=Reconciliation, CommissionPayout=CommissionPayout
)
MachineView.update_forward_refs(
    MachineFigures=MachineFigures, CommissionRecipient=CommissionRecipient
)


def document_nullable(*models: type[BaseModel]) -> None:
    """Pydantic v1 writes an optional field's schema without `null`, so the
    OpenAPI (3.1) LNbits serves would forbid the nulls the API returns. Add
    `null` to every field that allows None."""

    def schema_extra(schema: dict[str, Any], model: type[BaseModel]) -> None:
        properties = schema.get("properties", {})
        for field in model.__fields__.values():
            prop = properties.get(field.alias)
            if not field.allow_none or prop is None:
                continue
            outer = {k: prop.pop(k) for k in ("title", "default") if k in prop}
            if "anyOf" in prop:
                if {"type": "null"} not in prop["anyOf"]:
                    prop["anyOf"].append({"type": "null"})
                properties[field.alias] = {**prop, **outer}
            else:
                properties[field.alias] = {"anyOf": [prop, {"type": "null"}], **outer}

    for model in models:
        model.__config__.schema_extra = schema_extra  # type: ignore[assignment]


document_nullable(
    *(
        obj
        for obj in list(globals().values())
        if isinstance(obj, type)
        and issubclass(obj, BaseModel)
        and obj.__module__ == __name__
    )
)
