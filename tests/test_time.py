"""One representation for every timestamp (issue 10, part 6).

The PostgreSQL run uses a server whose TimeZone is America/Guatemala (UTC-6,
see pg_server.py). Timestamps this extension writes through SQL
(`to_timestamp()`) and from models must agree with each other and with the
clock, and comparisons against "as of" times must not shift by the offset.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from api_helpers import add_deposit, fresh_currency, register_client

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


async def test_written_timestamps_read_back_as_written(env):
    before = datetime.now(timezone.utc)
    client = await register_client(env)
    deposit = await add_deposit(env, client["id"], "10", fresh_currency(), True)
    after = datetime.now(timezone.utc)
    fetched = (await env.api("GET", f"/deposits/{deposit['id']}")).json()
    slack = timedelta(seconds=2)
    for field in ("created_at", "confirmed_at"):
        moment = _parse(fetched[field])
        assert before - slack <= moment <= after + slack, (field, moment, before)


async def test_a_deposit_confirmed_now_counts_for_a_settlement_now(env):
    """Written by SQL (confirm) and compared by SQL (as of the settlement's
    time): the deposit must count at once, not hours later."""
    from lnbits.db import Database
    from satmachineadmin.crud import get_flow_balances

    currency = fresh_currency()
    client = await register_client(env)
    await add_deposit(env, client["id"], "25", currency, True)
    from satmachineadmin.crud import db

    assert isinstance(db, Database)
    async with db.connect() as conn:
        balances = await get_flow_balances(
            conn, currency, datetime.now(timezone.utc) + timedelta(seconds=2)
        )
    assert [b.client_id for b in balances] == [client["id"]]
    async with db.connect() as conn:
        earlier = await get_flow_balances(
            conn, currency, datetime.now(timezone.utc) - timedelta(minutes=5)
        )
    assert earlier == []


async def test_a_deposit_written_from_a_model_counts_from_its_moment(env):
    """Rows written from models (the attribution deposit is one) and the
    "as of" comparison agree to the sub-second, on both backends."""
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db, get_flow_balances
    from satmachineadmin.models import DcaDeposit

    currency = fresh_currency()
    client = await register_client(env)
    whole = datetime.now(timezone.utc).replace(microsecond=0)
    confirmed = whole + timedelta(milliseconds=500)
    await db.insert(
        "satoshimachine.dca_deposits",
        DcaDeposit(
            id=urlsafe_short_hash(),
            client_id=client["id"],
            amount="40",
            currency=currency,
            status="confirmed",
            created_at=confirmed,
            confirmed_at=confirmed,
        ),
    )
    async with db.connect() as conn:
        just_after = await get_flow_balances(
            conn, currency, confirmed + timedelta(milliseconds=200)
        )
        just_before = await get_flow_balances(
            conn, currency, confirmed - timedelta(milliseconds=200)
        )
    assert [b.client_id for b in just_after] == [client["id"]]
    assert just_before == []
