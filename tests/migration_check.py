"""Upgrade check, run as its own process (LNbits settings are fixed at import):

1. build the database the old extension left: core tables, its m001 + m002,
   version 2 in `dbversions`, and rows written the way it wrote them
   (fiat such as 7.54 in INTEGER columns, REAL rates, a config with secrets);
2. start LNbits with this extension on it (m003+ run at start-up);
3. check every row survived with its cents, and that new writes keep cents.

Usage: python migration_check.py RUN_DIR [DATABASE_URL]
Prints "MIGRATION OK" and exits 0 on success.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from lnbits_sandbox import offline_settings, prepare_run_dir

ROOT = Path(__file__).resolve().parent.parent
RUN = prepare_run_dir(Path(sys.argv[1]))
os.environ.update(offline_settings(RUN))
if len(sys.argv) > 2:
    os.environ["LNBITS_DATABASE_URL"] = sys.argv[2]
else:
    os.environ.pop("LNBITS_DATABASE_URL", None)

os.chdir(RUN)

OLD_DEPOSITS = [
    ("dep1", "cl1", "690", "confirmed"),
    ("dep2", "cl2", "7.54", "confirmed"),
    ("dep3", "cl3", "2.38", "confirmed"),
    ("dep4", "cl4", "0.07", "confirmed"),
    ("dep5", "cl1", "25.5", "pending"),
]


def _load_released_migrations():
    """The released m001/m002 (kept unchanged in migrations.py)."""
    spec = importlib.util.spec_from_file_location(
        "released_migrations", ROOT / "migrations.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def build_old_install() -> tuple[bool, dict[str, Decimal]]:
    from lnbits.core.crud.db_versions import update_migration_version
    from lnbits.core.helpers import migrate_databases
    from lnbits.db import POSTGRES, Database

    await migrate_databases()
    old = _load_released_migrations()
    db = Database("ext_satoshimachine")
    async with db.connect() as conn:
        t = db.timestamp_placeholder("t")
        await old.m001_initial_dca_schema(conn)
        await old.m002_add_transaction_time_to_dca_payments(conn)
        now = datetime.now()
        for i in range(1, 5):
            await conn.execute(
                "INSERT INTO satoshimachine.dca_clients (id, user_id, wallet_id, "
                "username, dca_mode, fixed_mode_daily_limit, status, created_at, "
                "updated_at) VALUES (:id, :u, :w, :n, 'flow', NULL, 'active', "
                f"{t}, {t})",
                {
                    "id": f"cl{i}",
                    "u": f"user{i}",
                    "w": f"wallet{i}",
                    "n": f"c{i}",
                    "t": now,
                },
            )
        for dep_id, client, amount, status in OLD_DEPOSITS:
            await conn.execute(
                "INSERT INTO satoshimachine.dca_deposits (id, client_id, amount, "
                "currency, status, notes, created_at, confirmed_at) VALUES "
                f"(:id, :c, :a, 'GTQ', :s, 'old', {t}, {t})",
                {"id": dep_id, "c": client, "a": float(amount), "s": status, "t": now},
            )
        await conn.execute(
            "INSERT INTO satoshimachine.dca_payments (id, client_id, amount_sats, "
            "amount_fiat, exchange_rate, transaction_type, lamassu_transaction_id, "
            "payment_hash, status, created_at, transaction_time) VALUES "
            "('pay1', 'cl1', 15000, :f, :r, 'flow', 'ltx1', 'hash1', 'confirmed', "
            f"{t}, {t})",
            {"f": 12.5, "r": 1200.123456, "t": now},
        )
        await conn.execute(
            "INSERT INTO satoshimachine.lamassu_config (id, host, port, database_name, "
            "username, password, source_wallet_id, commission_wallet_id, is_active, "
            "use_ssh_tunnel, ssh_port, ssh_password, created_at, updated_at) VALUES "
            "('cfg1', 'atm.example', 5432, 'lamassu', 'reader', 'db-secret', NULL, "
            f"NULL, :active, :ssh, 22, 'ssh-secret', {t}, {t})",
            {"active": True, "ssh": False, "t": now},
        )
        await conn.execute(
            "INSERT INTO satoshimachine.lamassu_transactions (id, "
            "lamassu_transaction_id, fiat_amount, crypto_amount, "
            "commission_percentage, discount, effective_commission, "
            "commission_amount_sats, base_amount_sats, exchange_rate, crypto_code, "
            "fiat_code, device_id, transaction_time, processed_at, clients_count, "
            "distributions_total_sats) VALUES ('lt1', 'ltx1', 100, 16000, 0.055, 0, "
            f"0.055, 834, 15166, 151.66, 'LN', 'GTQ', 'dev1', {t}, {t}, 1, 15000)",
            {"t": now},
        )
    from lnbits.db import Database as CoreDatabase

    core = CoreDatabase("database")
    async with core.connect() as conn:
        await update_migration_version(conn, "satmachineadmin", 2)
    # What the old install really holds: Postgres INTEGER columns had already
    # lost the cents before the upgrade (the bug m003 fixes); SQLite kept them.
    rows = await db.fetchall(
        "SELECT id, amount FROM satoshimachine.dca_deposits UNION ALL "
        "SELECT id, amount_fiat AS amount FROM satoshimachine.dca_payments"
    )
    held = {row["id"]: Decimal(str(row["amount"])) for row in rows}
    return db.type == POSTGRES, held


async def upgrade_and_check(postgres: bool, held: dict[str, Decimal]) -> None:
    from lnbits.app import create_app

    app = create_app()
    upgraded_at = datetime.now(timezone.utc).replace(microsecond=0)
    async with app.router.lifespan_context(app):
        from lnbits.core.crud.db_versions import get_db_versions
        from satmachineadmin.crud import (
            db,
            get_client_summaries,
            get_config,
            get_deposit,
            get_payment,
        )

        versions = {v.db: v.version for v in await get_db_versions()}
        assert versions.get("satmachineadmin", 0) >= 7, versions
        # Every row keeps exactly the value the old install held; on SQLite
        # that is the cents as entered.
        for dep_id, _, amount, status in OLD_DEPOSITS:
            deposit = await get_deposit(dep_id)
            assert deposit, dep_id
            assert deposit.amount == held[dep_id], (dep_id, deposit.amount, held)
            if not postgres:
                assert deposit.amount == Decimal(amount), (dep_id, deposit.amount)
            assert deposit.status == status
        payment = await get_payment("pay1")
        assert payment and payment.amount_sats == 15000
        # m008: the payout's currency, from its Lamassu transaction.
        assert payment.currency == "GTQ", payment
        assert payment.amount_fiat == held["pay1"], (payment.amount_fiat, held)
        config = await get_config()
        assert config and config.password == "db-secret"
        assert "db-secret" not in config.public().json()
        row = await db.fetchone(
            "SELECT COUNT(*) AS n FROM satoshimachine.lamassu_transactions"
        )
        assert int(row["n"]) == 1
        # The old processed transactions still show on the parity path, with
        # the payments made for them.
        from satmachineadmin.crud import (
            get_transaction_distributions,
            get_transaction_view,
        )

        legacy = await get_transaction_view("lt1")
        assert legacy and legacy.source == "legacy", legacy
        assert legacy.lamassu_transaction_id == "ltx1"
        assert legacy.crypto_amount == 16000
        distributions = await get_transaction_distributions(legacy)
        assert [d.payment_id for d in distributions] == ["pay1"], distributions
        clients = await get_client_summaries()
        assert clients.total == 4
        # After the upgrade, cents survive on both backends.
        await db.execute(
            "UPDATE satoshimachine.dca_deposits SET amount = :a WHERE id = 'dep2'",
            {"a": Decimal("7.54")},
        )
        deposit = await get_deposit("dep2")
        assert deposit and deposit.amount == Decimal("7.54"), deposit
        # The client extension's own balance query still works.
        total = await db.fetchone(
            "SELECT COALESCE(SUM(amount), 0) AS total FROM satoshimachine.dca_deposits "
            "WHERE client_id = 'cl2' AND status = 'confirmed'"
        )
        assert Decimal(str(total["total"])).quantize(Decimal("0.01")) == Decimal("7.54")
        # m009: the upgrade line is drawn at the upgrade (nothing paid before it
        # is split unless the operator asks), and the old extension's Lamassu
        # ids are known as already split.
        from satmachineadmin.upgrade_line import get_first_run_at, old_extension_record

        line = await get_first_run_at()
        assert upgraded_at <= line <= datetime.now(timezone.utc), (upgraded_at, line)
        row = await db.fetchone("SELECT COUNT(*) AS n FROM satoshimachine.upgrade_line")
        assert int(row["n"]) == 1
        assert await old_extension_record("ltx1") == "lamassu_transactions"
        assert await old_extension_record(" LTX1 ") == "lamassu_transactions"
        assert await old_extension_record("ltx-unknown") is None


async def main() -> None:
    postgres, held = await build_old_install()
    await upgrade_and_check(postgres, held)
    print("MIGRATION OK")


if __name__ == "__main__":
    asyncio.run(main())
