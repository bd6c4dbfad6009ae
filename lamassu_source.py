"""The Lamassu database as a cash-out source, and the parity poll.

Legacy lamassu-server (the SatoshiMachine fork's LNbits wallet plugin) creates a
plain invoice on the source wallet and stores its bolt11 as
`cash_out_txs.to_address`; we match the settlement's invoice there. Only a
cash-out whose cash was confirmed dispensed is distributed; until then the
settlement waits and is re-checked by the recovery loop, and one that can never
be dispensed is flagged for the operator (hold for a refund, or enter the fiat
that really left the machine by hand).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import timedelta
from decimal import Decimal

from lnbits.bolt11 import decode as bolt11_decode
from loguru import logger

from .allocation import (
    crypto_atoms_match,
    effective_commission,
    split_from_commission,
    split_from_ticker,
    to_fiat,
)
from .cashout import CashOutData, Lookup, LookupState
from .crud import get_known_payment_hashes, set_config_timestamps
from .lamassu import LamassuCashOut, LamassuClient, LamassuSettings
from .messages import Message
from .models import LamassuConfig, Settlement, utc_now
from .transaction_processor import cash_out_sources

SOURCE_NAME = "lamassu"
POLL_LOOKBACK = timedelta(days=7)


def settings_from_config(config: LamassuConfig) -> LamassuSettings:
    return LamassuSettings(
        host=config.host,
        port=config.port,
        database=config.database_name,
        user=config.username,
        password=config.password or None,
        use_ssh_tunnel=config.use_ssh_tunnel,
        ssh_host=config.ssh_host,
        ssh_port=config.ssh_port,
        ssh_username=config.ssh_username,
        ssh_password=config.ssh_password or None,
        ssh_private_key=config.ssh_private_key or None,
        ssh_known_hosts=config.ssh_known_hosts or None,
    )


def cash_out_to_lookup(settlement: Settlement, row: LamassuCashOut) -> Lookup:
    """Judge a matched cash-out row (pure: no I/O)."""
    if row.crypto_atoms != settlement.amount_sats:
        return Lookup(
            LookupState.failed,
            Message(
                "lamassu_cash_out.amount_mismatch",
                {
                    "id": row.id,
                    "atoms": row.crypto_atoms,
                    "sats": settlement.amount_sats,
                },
            ),
        )
    state = row.state
    if state == "waiting":
        return Lookup(
            LookupState.waiting,
            Message("lamassu_cash_out.waiting", {"id": row.id, "status": row.status}),
        )
    if state == "failed":
        params = {"id": row.id, "status": row.status}
        if row.error:
            code = "lamassu_cash_out.never_dispensed_error"
            params["error"] = row.error
        else:
            code = "lamassu_cash_out.never_dispensed"
        return Lookup(LookupState.failed, Message(code, params))
    commission = row.commission_percentage or Decimal(0)
    c_eff = effective_commission(commission, row.discount)
    review: Message | None = None
    if row.raw_ticker_price:
        split = split_from_ticker(
            settlement.amount_sats, row.fiat, row.raw_ticker_price
        )
        if not crypto_atoms_match(
            settlement.amount_sats, row.fiat, row.raw_ticker_price, c_eff, row.fixed_fee
        ):
            review = Message(
                "lamassu_cash_out.price_mismatch",
                {
                    "id": row.id,
                    "fiat": str(row.fiat),
                    "currency": row.fiat_code,
                    "ticker": str(row.raw_ticker_price),
                    "commission": f"{c_eff:.4%}",
                    "sats": settlement.amount_sats,
                },
            )
    else:
        split = split_from_commission(settlement.amount_sats, c_eff)
    data = CashOutData(
        source=SOURCE_NAME,
        fiat_amount=to_fiat(row.fiat),
        fiat_code=row.fiat_code,
        split=split,
        commission_percentage=row.commission_percentage,
        discount=row.discount,
        lamassu_transaction_id=row.id,
        device_id=row.device_id,
        cash_out_time=row.confirmed_at or row.created,
        raw={
            "id": row.id,
            "device_id": row.device_id,
            "fiat": str(row.fiat),
            "fiat_code": row.fiat_code,
            "crypto_atoms": row.crypto_atoms,
            "commission_percentage": str(row.commission_percentage),
            "discount": str(row.discount),
            "raw_ticker_price": str(row.raw_ticker_price),
            "fixed_fee": str(row.fixed_fee),
            "status": row.status,
        },
        review_reason=review,
    )
    return Lookup(
        LookupState.found, Message("lamassu_cash_out.found", {"id": row.id}), data
    )


class _Session:
    """One Lamassu connection (and tunnel) shared by every lookup and the poll
    of one recovery pass, opened on first use. A failure to connect is kept for
    the rest of the pass: one attempt per pass, not one per settlement."""

    def __init__(self, settings: LamassuSettings):
        self.settings = settings
        self.client: LamassuClient | None = None
        self.error: BaseException | None = None

    async def get(self) -> LamassuClient:
        if self.error is not None:
            raise self.error
        if self.client is None:
            client = LamassuClient(self.settings)
            try:
                await client.connect()
            except BaseException as exc:
                await client.close()
                self.error = exc
                raise
            self.client = client
        return self.client

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None


# Per task: the recovery pass's lookups and poll share its session; the
# listener and API requests run in other tasks and never touch it (an asyncpg
# connection serves one operation at a time).
_session: ContextVar[_Session | None] = ContextVar("lamassu_session", default=None)


@asynccontextmanager
async def lamassu_session(config: LamassuConfig | None) -> AsyncIterator[None]:
    """Within this block (in this task) lookups and the poll share one
    connection. Lookups outside one open their own."""
    if not config or not config.lamassu_configured or _session.get() is not None:
        yield
        return
    session = _Session(settings_from_config(config))
    token = _session.set(session)
    try:
        yield
    finally:
        _session.reset(token)
        await session.close()


@asynccontextmanager
async def _client_for(config: LamassuConfig) -> AsyncIterator[LamassuClient]:
    session = _session.get()
    if session is not None:
        yield await session.get()
        return
    async with LamassuClient(settings_from_config(config)) as client:
        yield client


class LamassuSource:
    name = SOURCE_NAME

    async def lookup(
        self, settlement: Settlement, payment_extra: dict, config: LamassuConfig
    ) -> Lookup | None:
        if not config.lamassu_configured:
            return None
        async with _client_for(config) as client:
            row = await client.find_cash_out(
                bolt11=settlement.bolt11, payment_hash=settlement.payment_hash
            )
        if row is None:
            return None
        return cash_out_to_lookup(settlement, row)


def _payment_hash_of(to_address: str | None) -> str | None:
    if not to_address:
        return None
    invoice = to_address.strip()
    if invoice.lower().startswith("lightning:"):
        invoice = invoice[len("lightning:") :]
    try:
        return bolt11_decode(invoice).payment_hash
    except Exception:
        return None


async def poll_lamassu(config: LamassuConfig) -> dict:
    """Parity poll: recent dispensed cash-outs, and which of them have a
    settlement in the source wallet. Those that do not (on-chain cash-outs,
    whose sats never reach LNbits, or a payment not seen yet) are listed for
    the operator; nothing is ever minted to cover them."""
    now = utc_now()
    await set_config_timestamps(config.id, last_poll_time=now)
    since = (config.last_successful_poll or now - POLL_LOOKBACK) - timedelta(days=1)
    async with _client_for(config) as client:
        rows = await client.recent_cash_outs(since)
    hashes = {row.id: _payment_hash_of(row.to_address) for row in rows}
    known = await get_known_payment_hashes([h for h in hashes.values() if h])
    matched, unmatched = [], []
    for row in rows:
        if row.state != "dispensed":
            continue
        entry = {
            "id": row.id,
            "crypto_code": row.crypto_code,
            "crypto_atoms": row.crypto_atoms,
            "fiat": str(row.fiat),
            "fiat_code": row.fiat_code,
            "device_id": row.device_id,
            "created": row.created.isoformat(),
        }
        payment_hash = hashes[row.id]
        if payment_hash and payment_hash in known:
            matched.append(entry)
        else:
            entry["reason"] = (
                "on-chain cash-out: its sats never reach LNbits"
                if row.crypto_code != "LN"
                else "no settlement for its invoice in the source wallet yet"
            )
            unmatched.append(entry)
    await set_config_timestamps(config.id, last_successful_poll=now)
    if unmatched:
        logger.info(f"satmachineadmin: poll: {len(unmatched)} cash-out(s) unmatched")
    return {"checked": len(rows), "matched": matched, "unmatched": unmatched}


# Asked after the payment's own metadata (see transaction_processor).
if not any(source.name == SOURCE_NAME for source in cash_out_sources):
    cash_out_sources.append(LamassuSource())
