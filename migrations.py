"""Database migrations for the `satoshimachine` schema.

m001 and m002 are the released migrations of the extension this one replaces; they
are kept verbatim in effect (same tables, same columns) so that an install at
version 2 simply continues with m003. They use `IF NOT EXISTS` because LNbits'
"delete extension data" action resets the version without dropping this schema.

Everything new is appended as m003 onwards. Never edit a released migration.
"""

from lnbits.db import Connection

SCHEMA = "satoshimachine"


def _is_postgres(db: Connection) -> bool:
    return db.type != "SQLITE"


async def m001_initial_dca_schema(db: Connection):
    """The old extension's schema, column for column."""
    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.dca_clients (
            id TEXT PRIMARY KEY NOT NULL,
            user_id TEXT NOT NULL,
            wallet_id TEXT NOT NULL,
            username TEXT,
            dca_mode TEXT NOT NULL DEFAULT 'flow',
            fixed_mode_daily_limit INTEGER,
            status TEXT NOT NULL DEFAULT 'active',
            created_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now},
            updated_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now}
        );
        """)
    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.dca_deposits (
            id TEXT PRIMARY KEY NOT NULL,
            client_id TEXT NOT NULL,
            amount INTEGER NOT NULL,
            currency TEXT NOT NULL DEFAULT 'GTQ',
            status TEXT NOT NULL DEFAULT 'pending',
            notes TEXT,
            created_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now},
            confirmed_at TIMESTAMP
        );
        """)
    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.dca_payments (
            id TEXT PRIMARY KEY NOT NULL,
            client_id TEXT NOT NULL,
            amount_sats INTEGER NOT NULL,
            amount_fiat INTEGER NOT NULL,
            exchange_rate REAL NOT NULL,
            transaction_type TEXT NOT NULL,
            lamassu_transaction_id TEXT,
            payment_hash TEXT,
            status TEXT NOT NULL DEFAULT 'pending',
            created_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now}
        );
        """)
    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.lamassu_config (
            id TEXT PRIMARY KEY NOT NULL,
            host TEXT NOT NULL,
            port INTEGER NOT NULL DEFAULT 5432,
            database_name TEXT NOT NULL,
            username TEXT NOT NULL,
            password TEXT NOT NULL,
            source_wallet_id TEXT,
            commission_wallet_id TEXT,
            is_active BOOLEAN NOT NULL DEFAULT true,
            test_connection_last TIMESTAMP,
            test_connection_success BOOLEAN,
            last_poll_time TIMESTAMP,
            last_successful_poll TIMESTAMP,
            use_ssh_tunnel BOOLEAN NOT NULL DEFAULT false,
            ssh_host TEXT,
            ssh_port INTEGER NOT NULL DEFAULT 22,
            ssh_username TEXT,
            ssh_password TEXT,
            ssh_private_key TEXT,
            created_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now},
            updated_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now}
        );
        """)
    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.lamassu_transactions (
            id TEXT PRIMARY KEY NOT NULL,
            lamassu_transaction_id TEXT NOT NULL UNIQUE,
            fiat_amount INTEGER NOT NULL,
            crypto_amount INTEGER NOT NULL,
            commission_percentage REAL NOT NULL,
            discount REAL NOT NULL DEFAULT 0.0,
            effective_commission REAL NOT NULL,
            commission_amount_sats INTEGER NOT NULL,
            base_amount_sats INTEGER NOT NULL,
            exchange_rate REAL NOT NULL,
            crypto_code TEXT NOT NULL DEFAULT 'BTC',
            fiat_code TEXT NOT NULL DEFAULT 'GTQ',
            device_id TEXT,
            transaction_time TIMESTAMP NOT NULL,
            processed_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now},
            clients_count INTEGER NOT NULL DEFAULT 0,
            distributions_total_sats INTEGER NOT NULL DEFAULT 0
        );
        """)


async def m002_add_transaction_time_to_dca_payments(db: Connection):
    """The old extension's second migration. Guarded so a re-run after "delete
    extension data" (which resets the version but keeps the schema) succeeds."""
    if _is_postgres(db):
        await db.execute(
            f"ALTER TABLE {SCHEMA}.dca_payments "
            "ADD COLUMN IF NOT EXISTS transaction_time TIMESTAMP"
        )
        return
    rows = await db.fetchall(f"PRAGMA {SCHEMA}.table_info(dca_payments)")
    if "transaction_time" not in {row["name"] for row in rows}:
        await db.execute(
            f"ALTER TABLE {SCHEMA}.dca_payments ADD COLUMN transaction_time TIMESTAMP"
        )


async def _add_column(db: Connection, table: str, column: str, ddl: str) -> None:
    """ADD COLUMN that tolerates a column left by an earlier partial run."""
    if _is_postgres(db):
        await db.execute(
            f"ALTER TABLE {SCHEMA}.{table} ADD COLUMN IF NOT EXISTS {column} {ddl}"
        )
        return
    rows = await db.fetchall(f"PRAGMA {SCHEMA}.table_info({table})")
    if column not in {row["name"] for row in rows}:
        await db.execute(f"ALTER TABLE {SCHEMA}.{table} ADD COLUMN {column} {ddl}")


async def _create_index(
    db: Connection,
    name: str,
    table: str,
    columns: str,
    unique: bool = False,
    where: str = "",
) -> None:
    """SQLite wants the schema on the index name, Postgres on the table.
    `where` makes a partial index (both backends have them)."""
    kind = "UNIQUE INDEX" if unique else "INDEX"
    if _is_postgres(db):
        target = f"{name} ON {SCHEMA}.{table}"
    else:
        target = f"{SCHEMA}.{name} ON {table}"
    partial = f" WHERE {where}" if where else ""
    await db.execute(f"CREATE {kind} IF NOT EXISTS {target} ({columns}){partial}")


async def m003_exact_fiat_columns(db: Connection):
    """Keep fiat cents and full-precision rates on Postgres.

    The released schema declares fiat as INTEGER and rates as REAL. SQLite's
    dynamic typing already keeps 7.54 in an INTEGER column (as an 8-byte double,
    read back and quantized to cents), but Postgres truncates fiat to whole units
    and REAL is a 4-byte float there. Convert the columns in place; every row is
    kept, and the companion client extension's SUM() queries keep working.
    """
    if not _is_postgres(db):
        return
    fiat = "NUMERIC(18, 2)"
    ratio = "DOUBLE PRECISION"
    changes = {
        "dca_deposits": {"amount": fiat},
        "dca_payments": {
            "amount_fiat": fiat,
            "exchange_rate": ratio,
            "amount_sats": "BIGINT",
        },
        "dca_clients": {"fixed_mode_daily_limit": fiat},
        "lamassu_transactions": {
            "fiat_amount": fiat,
            "crypto_amount": "BIGINT",
            "commission_percentage": ratio,
            "discount": ratio,
            "effective_commission": ratio,
            "commission_amount_sats": "BIGINT",
            "base_amount_sats": "BIGINT",
            "exchange_rate": ratio,
            "distributions_total_sats": "BIGINT",
        },
    }
    for table, columns in changes.items():
        for column, new_type in columns.items():
            await db.execute(
                f"ALTER TABLE {SCHEMA}.{table} ALTER COLUMN {column} TYPE {new_type}"
            )


async def m004_settlement_ledger(db: Connection):
    """One row per incoming ATM settlement payment; its split and its state.

    The UNIQUE payment hash is the lock that makes a duplicate notification, a
    recovery scan and the listener all agree on a single settlement.
    """
    fiat = "NUMERIC(18, 2)"
    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.settlements (
            id TEXT PRIMARY KEY NOT NULL,
            payment_hash TEXT NOT NULL UNIQUE,
            wallet_id TEXT NOT NULL,
            amount_sats {db.big_int} NOT NULL,
            bolt11 TEXT,
            memo TEXT,
            paid_at TIMESTAMP NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            status_detail TEXT,
            data_source TEXT,
            fiat_amount {fiat},
            fiat_code TEXT,
            principal_sats {db.big_int},
            commission_sats {db.big_int},
            orphan_sats {db.big_int},
            orphan_fiat {fiat},
            distributed_sats {db.big_int},
            distributed_fiat {fiat},
            exchange_rate DOUBLE PRECISION,
            commission_percentage DOUBLE PRECISION,
            discount DOUBLE PRECISION,
            reported_fee_sats {db.big_int},
            lamassu_transaction_id TEXT,
            device_id TEXT,
            atm_txid TEXT,
            cash_out_time TIMESTAMP,
            cash_out_data TEXT,
            commission_wallet_id TEXT,
            commission_status TEXT,
            commission_bolt11 TEXT,
            commission_payment_hash TEXT,
            commission_error TEXT,
            lookup_attempts INTEGER NOT NULL DEFAULT 0,
            last_lookup_at TIMESTAMP,
            reviewed_by TEXT,
            review_note TEXT,
            created_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now},
            updated_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now}
        );
        """)
    await _create_index(db, "settlements_status_idx", "settlements", "status")
    await _create_index(db, "settlements_paid_at_idx", "settlements", "paid_at")


async def m005_payouts_in_dca_payments(db: Connection):
    """Client payouts stay in `dca_payments` (the client extension reads them);
    these columns tie each payout to its settlement and keep the invoice it pays,
    so a retry after a crash pays the same invoice (an internal invoice can be
    paid only once) instead of a new one."""
    await _add_column(db, "dca_payments", "settlement_id", "TEXT")
    await _add_column(db, "dca_payments", "bolt11", "TEXT")
    await _add_column(db, "dca_payments", "error", "TEXT")
    await _add_column(db, "dca_payments", "attempts", "INTEGER NOT NULL DEFAULT 0")
    await _add_column(db, "dca_payments", "updated_at", "TIMESTAMP")
    # NULLs are distinct in a UNIQUE index on both backends, so legacy rows
    # without a settlement never collide.
    await _create_index(
        db,
        "dca_payments_settlement_client_type",
        "dca_payments",
        "settlement_id, client_id, transaction_type",
        unique=True,
    )
    await _create_index(
        db, "dca_payments_client_idx", "dca_payments", "client_id, status"
    )
    await _create_index(
        db, "dca_deposits_client_idx", "dca_deposits", "client_id, status"
    )


async def m006_reconciliations(db: Connection):
    """Orphans: settlement sats that no tracked client balance covered."""
    fiat = "NUMERIC(18, 2)"
    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.reconciliations (
            id TEXT PRIMARY KEY NOT NULL,
            settlement_id TEXT NOT NULL UNIQUE,
            orphan_sats {db.big_int} NOT NULL,
            orphan_fiat {fiat} NOT NULL,
            fiat_code TEXT NOT NULL,
            exchange_rate DOUBLE PRECISION NOT NULL,
            status TEXT NOT NULL DEFAULT 'open',
            resolution TEXT,
            target_wallet_id TEXT,
            target_client_id TEXT,
            deposit_id TEXT,
            bolt11 TEXT,
            payment_hash TEXT,
            error TEXT,
            note TEXT,
            resolved_by TEXT,
            resolved_at TIMESTAMP,
            created_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now},
            updated_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now}
        );
        """)
    await _create_index(db, "reconciliations_status_idx", "reconciliations", "status")


async def m007_audit_and_settings(db: Connection):
    """An audit trail for operator actions, and the settings the new features
    need on the existing config row."""
    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.audit_log (
            id TEXT PRIMARY KEY NOT NULL,
            entity TEXT NOT NULL,
            entity_id TEXT NOT NULL,
            action TEXT NOT NULL,
            actor TEXT,
            details TEXT,
            created_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now}
        );
        """)
    await _create_index(db, "audit_log_entity_idx", "audit_log", "entity, entity_id")
    await _add_column(db, "lamassu_config", "ssh_known_hosts", "TEXT")
    await _add_column(db, "lamassu_config", "max_daily_limit", "NUMERIC(18, 2)")
    await _add_column(db, "lamassu_config", "limit_currency", "TEXT")
    await _add_column(
        db, "lamassu_config", "expected_commission_percentage", "DOUBLE PRECISION"
    )
    await _add_column(db, "lamassu_config", "scan_checkpoint", "TIMESTAMP")


async def m008_resolution_state_and_payout_currency(db: Connection):
    """Orphan resolution keyed by the orphan, and a currency on every payout.

    * `reconciliations.payout_id`: the one payout an attribution makes, written
      in the same transaction as the attribution deposit.
    * `dca_payments.currency`: payouts used to carry no currency, so a USD payout
      was subtracted from a GTQ balance. Backfilled from the payout's settlement,
      else the old extension's Lamassu transaction, else the client's only
      deposit currency, else GTQ (the only currency the old extension knew).
    * The one-payout-per-(settlement, client, type) rule no longer counts
      cancelled payouts, so a cancelled payout never blocks its replacement.
    """
    await _add_column(db, "reconciliations", "payout_id", "TEXT")
    await _add_column(db, "dca_payments", "currency", "TEXT")
    p = f"{SCHEMA}.dca_payments"
    await db.execute(f"""
        UPDATE {p} SET currency = (
            SELECT s.fiat_code FROM {SCHEMA}.settlements s
            WHERE s.id = {p}.settlement_id
        ) WHERE currency IS NULL AND settlement_id IS NOT NULL
        """)
    await db.execute(f"""
        UPDATE {p} SET currency = (
            SELECT MIN(t.fiat_code) FROM {SCHEMA}.lamassu_transactions t
            WHERE t.lamassu_transaction_id = {p}.lamassu_transaction_id
        ) WHERE currency IS NULL AND lamassu_transaction_id IS NOT NULL
        """)
    await db.execute(f"""
        UPDATE {p} SET currency = (
            SELECT MIN(d.currency) FROM {SCHEMA}.dca_deposits d
            WHERE d.client_id = {p}.client_id
            HAVING COUNT(DISTINCT d.currency) = 1
        ) WHERE currency IS NULL
        """)
    await db.execute(f"UPDATE {p} SET currency = 'GTQ' WHERE currency IS NULL")
    await db.execute(
        f"DROP INDEX IF EXISTS {SCHEMA}.dca_payments_settlement_client_type"
    )
    await _create_index(
        db,
        "dca_payments_settlement_client_type_live",
        "dca_payments",
        "settlement_id, client_id, transaction_type",
        unique=True,
        where="status <> 'cancelled'",
    )


async def m009_upgrade_line(db: Connection):
    """The upgrade line: when this extension first ran on this database.

    Payments into the source wallet before it were the old extension's to
    handle; the recovery scan (which looks back 30 days on its first run)
    records them as `before_upgrade` and splits none of them unless the
    operator asks (upgrade_line.py). One row, written once: a re-run after
    "delete extension data" keeps the original line.

    The line is now (this migration runs on the first start of the code that
    has it), or earlier if this extension already left traces here (its first
    settlement or audit entry), since it was running by then.
    """
    from datetime import datetime, timezone

    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.upgrade_line (
            id TEXT PRIMARY KEY NOT NULL,
            first_run_at TIMESTAMP NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now}
        );
        """)

    def as_utc(value) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            if value.tzinfo is None:
                return value.replace(tzinfo=timezone.utc)
            return value.astimezone(timezone.utc)
        try:
            return datetime.fromtimestamp(float(value), timezone.utc)
        except (TypeError, ValueError):
            return None

    now = datetime.now(timezone.utc)
    candidates = [now]
    for table in ("settlements", "audit_log"):
        row = await db.fetchone(
            f"SELECT MIN(created_at) AS earliest FROM {SCHEMA}.{table}"
        )
        earliest = as_utc(row["earliest"]) if row else None
        if earliest is not None:
            candidates.append(earliest)
    line = min(candidates).replace(microsecond=0)
    await db.execute(
        f"INSERT INTO {SCHEMA}.upgrade_line (id, first_run_at) "
        f"VALUES ('line', {db.timestamp_placeholder('line')}) "
        "ON CONFLICT (id) DO NOTHING",
        {"line": line},
    )


async def m010_waiting_window(db: Connection):
    """How long a settlement may wait for its cash-out data (default 24 h, the
    ATM's redeem window) before it is stale and left to the operator."""
    await _add_column(
        db, "lamassu_config", "waiting_window_hours", "INTEGER NOT NULL DEFAULT 24"
    )


async def m011_rate_tolerance(db: Connection):
    """How far (percent) a cash-out's price may be from an independent price
    before the settlement is flagged for the operator (default 10 %)."""
    await _add_column(
        db,
        "lamassu_config",
        "rate_tolerance_percent",
        "DOUBLE PRECISION NOT NULL DEFAULT 10",
    )


async def m012_client_review(db: Connection):
    """When the operator last reviewed a client row. The client extension lets
    any LNbits user insert their own row; until the operator has looked at it,
    it is shown as new. Rows from before this migration were already in use,
    so they count as reviewed when they were created."""
    await _add_column(db, "dca_clients", "reviewed_at", "TIMESTAMP")
    await db.execute(
        f"UPDATE {SCHEMA}.dca_clients SET reviewed_at = created_at "
        "WHERE reviewed_at IS NULL"
    )


async def m013_several_orphans_per_settlement(db: Connection):
    """A settlement may have more than one orphan: the one its split left
    (`origin` 'split') and one for each payout the operator cancelled after
    that orphan was resolved ('payout:<id>'). m006's UNIQUE settlement_id goes;
    (settlement_id, origin) is unique instead. SQLite cannot drop a column
    constraint, so there the table is rebuilt with every row."""
    await _add_column(db, "reconciliations", "origin", "TEXT NOT NULL DEFAULT 'split'")
    if _is_postgres(db):
        await db.execute(
            f"ALTER TABLE {SCHEMA}.reconciliations "
            "DROP CONSTRAINT IF EXISTS reconciliations_settlement_id_key"
        )
    else:
        columns = (
            "id, settlement_id, orphan_sats, orphan_fiat, fiat_code, exchange_rate, "
            "status, resolution, target_wallet_id, target_client_id, deposit_id, "
            "bolt11, payment_hash, error, note, resolved_by, resolved_at, "
            "created_at, updated_at, payout_id, origin"
        )
        await db.execute(f"DROP TABLE IF EXISTS {SCHEMA}.reconciliations_rebuilt")
        await db.execute(f"""
            CREATE TABLE {SCHEMA}.reconciliations_rebuilt (
                id TEXT PRIMARY KEY NOT NULL,
                settlement_id TEXT NOT NULL,
                orphan_sats {db.big_int} NOT NULL,
                orphan_fiat NUMERIC(18, 2) NOT NULL,
                fiat_code TEXT NOT NULL,
                exchange_rate DOUBLE PRECISION NOT NULL,
                status TEXT NOT NULL DEFAULT 'open',
                resolution TEXT,
                target_wallet_id TEXT,
                target_client_id TEXT,
                deposit_id TEXT,
                bolt11 TEXT,
                payment_hash TEXT,
                error TEXT,
                note TEXT,
                resolved_by TEXT,
                resolved_at TIMESTAMP,
                created_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now},
                updated_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now},
                payout_id TEXT,
                origin TEXT NOT NULL DEFAULT 'split'
            );
            """)
        await db.execute(
            f"INSERT INTO {SCHEMA}.reconciliations_rebuilt ({columns}) "
            f"SELECT {columns} FROM {SCHEMA}.reconciliations"
        )
        await db.execute(f"DROP TABLE {SCHEMA}.reconciliations")
        await db.execute(
            f"ALTER TABLE {SCHEMA}.reconciliations_rebuilt RENAME TO reconciliations"
        )
        await _create_index(
            db, "reconciliations_status_idx", "reconciliations", "status"
        )
    await _create_index(
        db,
        "reconciliations_settlement_origin",
        "reconciliations",
        "settlement_id, origin",
        unique=True,
    )


async def m014_fixed_mode(db: Connection):
    """Fixed mode (#12): fixed-mode payouts are delivered on the operator's
    schedule.

    * `dca_payments.deliver_after`: when a scheduled fixed-mode payout becomes
      due (NULL: at once, as every payout before); `delivery_slot`: the slot
      that released it for payment (NULL while it waits).
    * `fixed_delivery_slots`: one row per delivery slot, its key unique, taken
      before any payout of the slot is released, so a slot runs once.
    * `lamassu_config`: the operator's time zone (what "a day" is for a daily
      limit; NULL: the LNbits server's) and the delivery schedule."""
    await _add_column(db, "dca_payments", "deliver_after", "TIMESTAMP")
    await _add_column(db, "dca_payments", "delivery_slot", "TEXT")
    await _add_column(db, "lamassu_config", "time_zone", "TEXT")
    await _add_column(
        db,
        "lamassu_config",
        "fixed_delivery",
        "TEXT NOT NULL DEFAULT 'on_settlement'",
    )
    await _add_column(db, "lamassu_config", "fixed_delivery_time", "TEXT")
    await _add_column(db, "lamassu_config", "fixed_delivery_times", "INTEGER")
    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.fixed_delivery_slots (
            id TEXT PRIMARY KEY NOT NULL,
            due_at TIMESTAMP NOT NULL,
            status TEXT NOT NULL DEFAULT 'claimed',
            payouts INTEGER NOT NULL DEFAULT 0,
            claimed_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now},
            done_at TIMESTAMP
        );
        """)
    await _create_index(
        db,
        "dca_payments_scheduled_idx",
        "dca_payments",
        "deliver_after",
        where="deliver_after IS NOT NULL AND delivery_slot IS NULL",
    )
    await _create_index(db, "dca_payments_slot_idx", "dca_payments", "delivery_slot")


async def m015_alerts(db: Connection):
    """Alerts to the operator (and opt-in notices to clients), sent through
    LNbits' own notification channels (alerts.py).

    * `alerts`: one row per condition while it holds; the partial UNIQUE index
      on (kind, subject) among rows not yet cleared is the deduplication: a
      condition is opened (and sent) once, however many processes or passes
      see it, until it clears.
    * `alert_settings`: one row, the per-alert switches and thresholds (JSON).
    * `dca_clients.notify_balance_empty`: the client asked to be told when a
      balance reaches zero (off by default; the client extension's INSERTs
      leave it off)."""
    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.alerts (
            id TEXT PRIMARY KEY NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            audience TEXT NOT NULL DEFAULT 'operator',
            title TEXT NOT NULL,
            message TEXT NOT NULL,
            opened_at TIMESTAMP NOT NULL,
            last_seen_at TIMESTAMP,
            cleared_at TIMESTAMP,
            acknowledged_at TIMESTAMP,
            acknowledged_by TEXT,
            sent_at TIMESTAMP,
            cleared_sent_at TIMESTAMP
        );
        """)
    await _create_index(
        db,
        "alerts_open_key",
        "alerts",
        "kind, subject",
        unique=True,
        where="cleared_at IS NULL",
    )
    await _create_index(db, "alerts_opened_idx", "alerts", "opened_at")
    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.alert_settings (
            id TEXT PRIMARY KEY NOT NULL,
            data TEXT NOT NULL,
            updated_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now}
        );
        """)
    await _add_column(
        db, "dca_clients", "notify_balance_empty", "BOOLEAN NOT NULL DEFAULT false"
    )


async def m016_machines_and_commission_recipients(db: Connection):
    """Several ATMs and commission partners (#14).

    * `machines`: one row per ATM (Lamassu device id, bitSpire npub, or typed by
      hand), with the operator's name and location, when it was first and last
      seen, and the source wallet its Lightning payments arrive in (machines may
      have source wallets of their own, besides the configured one).
    * `commission_recipients`: who shares a settlement's commission, by exact
      percentage (text, so 33.3333 stays exact on both backends); machine_id ''
      is the global set, a machine's own set overrides it. The configured
      single commission wallet stays the global 100 % recipient while no
      global set is stored (so an upgraded install keeps paying it).
    * `commission_payouts`: each part of a settlement's commission, paid like a
      client payout (invoice stored before paying, status, attempts, error).
      Never in `dca_payments`: the client extension reads that table, and a
      commission is nobody's DCA purchase. Every commission the single-wallet
      processor planned becomes a 100 % part here, with its stored invoice, so
      one paying an interrupted commission goes on paying that same invoice.
    """
    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.machines (
            id TEXT PRIMARY KEY NOT NULL,
            device_id TEXT NOT NULL UNIQUE,
            name TEXT,
            location TEXT,
            source_wallet_id TEXT,
            first_seen TIMESTAMP,
            last_seen TIMESTAMP,
            reviewed_at TIMESTAMP,
            created_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now},
            updated_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now}
        );
        """)
    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.commission_recipients (
            id TEXT PRIMARY KEY NOT NULL,
            machine_id TEXT NOT NULL DEFAULT '',
            wallet_id TEXT NOT NULL,
            percent TEXT NOT NULL,
            label TEXT,
            position INTEGER NOT NULL DEFAULT 0,
            created_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now},
            updated_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now}
        );
        """)
    await _create_index(
        db,
        "commission_recipients_machine_wallet",
        "commission_recipients",
        "machine_id, wallet_id",
        unique=True,
    )
    await db.execute(f"""
        CREATE TABLE IF NOT EXISTS {SCHEMA}.commission_payouts (
            id TEXT PRIMARY KEY NOT NULL,
            settlement_id TEXT NOT NULL,
            position INTEGER NOT NULL DEFAULT 0,
            recipient_id TEXT,
            wallet_id TEXT NOT NULL,
            label TEXT,
            percent TEXT NOT NULL,
            amount_sats {db.big_int} NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            bolt11 TEXT,
            payment_hash TEXT,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now},
            updated_at TIMESTAMP NOT NULL DEFAULT {db.timestamp_now}
        );
        """)
    await _create_index(
        db,
        "commission_payouts_settlement_position",
        "commission_payouts",
        "settlement_id, position",
        unique=True,
    )
    await _create_index(
        db, "commission_payouts_status_idx", "commission_payouts", "status"
    )
    await _create_index(db, "settlements_device_idx", "settlements", "device_id")
    # The single-wallet commissions planned so far, as 100 % parts (history,
    # and the interrupted ones go on with their stored invoice).
    await db.execute(f"""
        INSERT INTO {SCHEMA}.commission_payouts (id, settlement_id, position,
            recipient_id, wallet_id, label, percent, amount_sats, status, bolt11,
            payment_hash, error, attempts, created_at, updated_at)
        SELECT s.id, s.id, 0, NULL, s.commission_wallet_id, 'commission', '100',
            s.commission_sats, s.commission_status, s.commission_bolt11,
            s.commission_payment_hash, s.commission_error, 0, s.updated_at,
            s.updated_at
        FROM {SCHEMA}.settlements s
        WHERE s.commission_wallet_id IS NOT NULL AND s.commission_sats > 0
          AND s.commission_status IN ('pending', 'failed', 'confirmed')
          AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.commission_payouts p
                          WHERE p.settlement_id = s.id)
        """)
    # Every device a settlement named so far is a machine (already in use:
    # reviewed), with the wallet it paid into.
    await db.execute(f"""
        INSERT INTO {SCHEMA}.machines (id, device_id, source_wallet_id,
            first_seen, last_seen, reviewed_at, created_at, updated_at)
        SELECT MIN(s.id), s.device_id, MIN(s.wallet_id), MIN(s.paid_at),
            MAX(s.paid_at), MIN(s.paid_at), MIN(s.paid_at), MAX(s.paid_at)
        FROM {SCHEMA}.settlements s
        WHERE s.device_id IS NOT NULL AND s.device_id <> ''
          AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.machines m
                          WHERE m.device_id = s.device_id)
        GROUP BY s.device_id
        """)


async def m017_stored_messages(db: Connection):
    """Texts the code writes for the operator, also as a message (messages.py),
    so the dashboard shows them in the reader's language: a settlement's
    status detail, a payout's, a commission part's and an orphan's error. The
    English stays in its old column; rows written before have no message and
    keep showing their English."""
    await _add_column(db, "settlements", "status_detail_msg", "TEXT")
    await _add_column(db, "dca_payments", "error_msg", "TEXT")
    await _add_column(db, "commission_payouts", "error_msg", "TEXT")
    await _add_column(db, "reconciliations", "error_msg", "TEXT")


async def m018_alert_messages(db: Connection):
    """Alerts in the reader's language (#15): each alert's title and message
    also as a message (code and params, JSON; messages.py), rendered again in
    the reader's language by the Alerts API. `title` and `message` stay in
    English; rows written before keep only them and are shown as they are."""
    await _add_column(db, "alerts", "title_msg", "TEXT")
    await _add_column(db, "alerts", "message_msg", "TEXT")
