"""Read-only client for a Lamassu server's PostgreSQL database, optionally
through an SSH tunnel.

* asyncpg, parameterised queries only, short timeouts, and every session set to
  `default_transaction_read_only`: this extension never writes to Lamassu.
* The SSH tunnel uses asyncssh, which LNbits does not ship: it is imported only
  when a tunnel is opened (`require_asyncssh`), so the extension loads on a
  stock LNbits and only the SSH option asks for the package. Key (from
  memory, never a temp file) or password auth, known-hosts checking when the
  operator gives the host's key; no `ssh` or `sshpass` processes.
* Lamassu renamed and added `cash_out_txs` columns over the years; the client
  reads which exist and selects NULL for the ones an older server lacks.

Error messages are written here, for the operator, and never contain the
configured passwords or keys. A LamassuError keeps its message (messages.py,
`lamassu.*`): its str() is English (a lookup stores it with the settlement), the
connection test shows it in the reader's language; what a driver says (an OS
error, an exception's class) is put into it as it is.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg

from .messages import Message, text

if TYPE_CHECKING:  # optional at run time: see require_asyncssh()
    import asyncssh

CASH_OUT_TABLE = "cash_out_txs"
# Wanted columns, and what stands in when a Lamassu version lacks one.
CASH_OUT_COLUMNS = (
    "id",
    "device_id",
    "to_address",
    "crypto_atoms",
    "crypto_code",
    "fiat",
    "fiat_code",
    "status",
    "dispense",
    "dispense_confirmed",
    "error",
    "error_code",
    "commission_percentage",
    "raw_ticker_price",
    "discount",
    "fixed_fee",
    "created",
    "confirmed_at",
)
REQUIRED_COLUMNS = {"id", "to_address", "crypto_atoms", "fiat", "fiat_code", "created"}
# Lamassu's status_stage values that mean the customer's payment will never
# be accepted.
FAILED_STATUSES = {"rejected", "insufficientFunds"}
MAX_ROWS = 1000


class LamassuError(Exception):
    """A failure explained for the operator (no secrets in the message). str()
    is English; `.message` renders it in any language."""

    def __init__(self, code: str, **params: Any) -> None:
        self.message = Message(code, params)
        super().__init__(self.message.render("en"))


@dataclass(frozen=True)
class LamassuSettings:
    host: str
    port: int = 5432
    database: str = "lamassu"
    user: str = "lamassu_pg"
    password: str | None = field(default=None, repr=False)
    use_ssh_tunnel: bool = False
    ssh_host: str | None = None
    ssh_port: int = 22
    ssh_username: str | None = None
    ssh_password: str | None = field(default=None, repr=False)
    ssh_private_key: str | None = field(default=None, repr=False)
    ssh_known_hosts: str | None = None
    connect_timeout: float = 10.0
    query_timeout: float = 10.0


@dataclass
class LamassuCashOut:
    id: str
    device_id: str | None
    to_address: str | None
    crypto_atoms: int
    crypto_code: str | None
    fiat: Decimal
    fiat_code: str
    status: str | None
    dispense: bool | None
    dispense_confirmed: bool | None
    error: str | None
    commission_percentage: Decimal | None
    raw_ticker_price: Decimal | None
    discount: Decimal | None
    fixed_fee: Decimal | None
    created: datetime
    confirmed_at: datetime | None

    @property
    def state(self) -> str:
        """dispensed: the cash is confirmed out, distribute. failed: it never
        will be (rejected, or the dispense failed). waiting: not yet."""
        if self.dispense_confirmed:
            return "dispensed"
        if self.status in FAILED_STATUSES:
            return "failed"
        if self.dispense and self.error:
            return "failed"
        if self.dispense_confirmed is None and self.dispense and not self.error:
            # A Lamassu too old to confirm dispenses: `dispense` is all we get.
            return "dispensed"
        return "waiting"

    @classmethod
    def from_record(cls, record: Any) -> LamassuCashOut:
        def decimal(value: Any) -> Decimal | None:
            return None if value is None else Decimal(str(value))

        return cls(
            id=str(record["id"]),
            device_id=record["device_id"],
            to_address=record["to_address"],
            crypto_atoms=int(record["crypto_atoms"]),
            crypto_code=record["crypto_code"],
            fiat=Decimal(str(record["fiat"])),
            fiat_code=record["fiat_code"],
            status=None if record["status"] is None else str(record["status"]),
            dispense=record["dispense"],
            dispense_confirmed=record["dispense_confirmed"],
            error=record["error"] or record["error_code"],
            commission_percentage=decimal(record["commission_percentage"]),
            raw_ticker_price=decimal(record["raw_ticker_price"]),
            discount=decimal(record["discount"]),
            fixed_fee=decimal(record["fixed_fee"]),
            created=record["created"],
            confirmed_at=record["confirmed_at"],
        )


@dataclass
class ConnectionStep:
    name: str
    ok: bool
    message: str


def require_asyncssh():
    """The asyncssh module, or a LamassuError naming the package and the
    command that adds it (never an ImportError at extension load)."""
    try:
        import asyncssh
    except ImportError:
        raise LamassuError("lamassu.asyncssh_missing") from None
    return asyncssh


def _ssh_error(exc: BaseException, settings: LamassuSettings) -> LamassuError:
    asyncssh = require_asyncssh()
    where = f"{settings.ssh_host}:{settings.ssh_port}"
    if isinstance(exc, asyncssh.KeyImportError):
        return LamassuError("lamassu.ssh_key_unreadable")
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return LamassuError("lamassu.ssh_host_key_unknown", where=where)
    if isinstance(exc, asyncssh.PermissionDenied):
        return LamassuError(
            "lamassu.ssh_login_refused", where=where, user=settings.ssh_username
        )
    if isinstance(exc, asyncssh.ChannelOpenError):
        return LamassuError(
            "lamassu.ssh_forward_refused",
            where=where,
            target=f"{settings.host}:{settings.port}",
        )
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return LamassuError("lamassu.ssh_timeout", where=where)
    if isinstance(exc, OSError):
        return LamassuError("lamassu.ssh_unreachable", where=where, error=exc.strerror)
    return LamassuError("lamassu.ssh_failed", where=where, error=exc.__class__.__name__)


def _db_error(exc: BaseException, settings: LamassuSettings) -> LamassuError:
    where = f"{settings.host}:{settings.port}"
    if isinstance(
        exc,
        asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError,
    ):
        return LamassuError("lamassu.db_login_refused", user=settings.user)
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return LamassuError("lamassu.db_missing", database=settings.database)
    if isinstance(exc, asyncpg.UndefinedTableError):
        return LamassuError(
            "lamassu.table_missing", table=CASH_OUT_TABLE, database=settings.database
        )
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return LamassuError(
            "lamassu.table_forbidden", user=settings.user, table=CASH_OUT_TABLE
        )
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return LamassuError("lamassu.db_timeout", where=where)
    if isinstance(exc, OSError):
        return LamassuError("lamassu.db_unreachable", where=where, error=exc.strerror)
    if isinstance(exc, asyncpg.PostgresError):
        return LamassuError("lamassu.db_answered", error=exc.__class__.__name__)
    return LamassuError("lamassu.db_failed", error=exc.__class__.__name__)


class LamassuClient:
    """`async with LamassuClient(settings) as client:` one read-only session
    (through the tunnel when configured), closed on exit."""

    def __init__(self, settings: LamassuSettings):
        self.settings = settings
        self._ssh: asyncssh.SSHClientConnection | None = None
        self._listener: asyncssh.SSHListener | None = None
        self._conn: asyncpg.Connection | None = None
        self._columns: set[str] | None = None

    async def __aenter__(self) -> LamassuClient:
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def open_tunnel(self) -> tuple[str, int]:
        """Where to connect to the database: directly, or a local port that the
        SSH connection forwards to the database host as seen from the server."""
        s = self.settings
        if not s.use_ssh_tunnel:
            return s.host, s.port
        if not s.ssh_host or not s.ssh_username:
            raise LamassuError("lamassu.ssh_needs_host")
        asyncssh = require_asyncssh()
        try:
            options: dict[str, Any] = {
                "username": s.ssh_username,
                "port": s.ssh_port,
                "connect_timeout": s.connect_timeout,
                "known_hosts": (
                    asyncssh.import_known_hosts(s.ssh_known_hosts)
                    if s.ssh_known_hosts
                    else None
                ),
                # Only what the operator configured: no agent, no ~/.ssh keys.
                "agent_path": None,
                "client_keys": (
                    [asyncssh.import_private_key(s.ssh_private_key)]
                    if s.ssh_private_key
                    else None
                ),
                "password": s.ssh_password,
                "preferred_auth": (
                    "publickey,password" if s.ssh_private_key else "password"
                ),
            }
            ssh = await asyncio.wait_for(
                asyncssh.connect(s.ssh_host, **options), s.connect_timeout + 1
            )
            self._ssh = ssh
            self._listener = await ssh.forward_local_port(
                "127.0.0.1", 0, s.host, s.port
            )
        except LamassuError:
            raise
        except (asyncssh.Error, OSError, asyncio.TimeoutError, ValueError) as exc:
            raise _ssh_error(exc, s) from None
        return "127.0.0.1", self._listener.get_port()

    async def login(self, host: str, port: int) -> None:
        s = self.settings
        try:
            self._conn = await asyncpg.connect(
                host=host,
                port=port,
                user=s.user,
                password=s.password,
                database=s.database,
                timeout=s.connect_timeout,
                command_timeout=s.query_timeout,
                ssl=False if s.use_ssh_tunnel else "prefer",
                server_settings={
                    "default_transaction_read_only": "on",
                    "application_name": "satmachineadmin",
                },
            )
        except (asyncpg.PostgresError, OSError, asyncio.TimeoutError) as exc:
            raise _db_error(exc, s) from None
        except Exception as exc:  # asyncpg raises a few non-Postgres errors
            raise _db_error(exc, s) from None

    async def connect(self) -> None:
        host, port = await self.open_tunnel()
        await self.login(host, port)

    async def close(self) -> None:
        if self._conn is not None:
            try:
                await asyncio.wait_for(self._conn.close(), 5)
            except Exception:
                self._conn.terminate()
            self._conn = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._ssh is not None:
            self._ssh.close()
            try:
                await asyncio.wait_for(self._ssh.wait_closed(), 5)
            except Exception:
                pass
            self._ssh = None

    @property
    def conn(self) -> asyncpg.Connection:
        if self._conn is None:
            raise LamassuError("lamassu.not_connected")
        return self._conn

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        try:
            return await self.conn.fetch(query, *args)
        except (asyncpg.PostgresError, OSError, asyncio.TimeoutError) as exc:
            raise _db_error(exc, self.settings) from None

    async def cash_out_columns(self) -> set[str]:
        if self._columns is None:
            rows = await self._fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = $1 AND table_schema = ANY(current_schemas(false))",
                CASH_OUT_TABLE,
            )
            columns = {row["column_name"] for row in rows}
            if not columns:
                raise LamassuError(
                    "lamassu.table_missing",
                    table=CASH_OUT_TABLE,
                    database=self.settings.database,
                )
            missing = REQUIRED_COLUMNS - columns
            if missing:
                raise LamassuError(
                    "lamassu.columns_missing",
                    table=CASH_OUT_TABLE,
                    columns=", ".join(sorted(missing)),
                )
            self._columns = columns
        return self._columns

    async def _select(self) -> str:
        columns = await self.cash_out_columns()
        # Column names come from our own constant list, never from input.
        parts = [
            (
                (f"{name}::text AS {name}" if name in ("id", "status") else name)
                if name in columns
                else f"NULL AS {name}"
            )
            for name in CASH_OUT_COLUMNS
        ]
        return f"SELECT {', '.join(parts)} FROM {CASH_OUT_TABLE}"

    async def find_cash_out(
        self, bolt11: str | None = None, payment_hash: str | None = None
    ) -> LamassuCashOut | None:
        """The cash-out whose address is this invoice. Lamassu's Lightning
        wallet plugins create the invoice for a cash-out and keep its bolt11
        as `to_address` (sometimes with a `lightning:` prefix)."""
        if not bolt11:
            return None
        invoice = bolt11.strip().lower()
        if invoice.startswith("lightning:"):
            invoice = invoice[len("lightning:") :]
        rows = await self._fetch(
            f"{await self._select()} WHERE lower(to_address) IN ($1, $2) "
            "ORDER BY created DESC LIMIT 2",
            invoice,
            f"lightning:{invoice}",
        )
        if not rows:
            return None
        return LamassuCashOut.from_record(rows[0])

    async def recent_cash_outs(self, since: datetime) -> list[LamassuCashOut]:
        """Every cash-out created since `since`, MAX_ROWS per query (keyset on
        created and id: never only the oldest MAX_ROWS of a busy day)."""
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        select = await self._select()
        order = "ORDER BY created, id::text LIMIT $2"
        rows = list(
            await self._fetch(f"{select} WHERE created >= $1 {order}", since, MAX_ROWS)
        )
        page = rows
        while len(page) == MAX_ROWS:
            last = page[-1]
            page = list(
                await self._fetch(
                    f"{select} WHERE (created, id::text) > ($1, $3) {order}",
                    last["created"],
                    MAX_ROWS,
                    last["id"],
                )
            )
            rows.extend(page)
        return [LamassuCashOut.from_record(row) for row in rows]

    async def cash_units(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The machines' dispenser counts (`devices`: cassette1..4, and
        recycler1..6 on newer servers) and the config keys that give their
        denominations and currency (newest `user_config` row of type
        'config'). Only columns that exist are read; an older server without
        these tables answers ([], {})."""

        async def fetch(query: str) -> list[Any]:
            try:
                return await self.conn.fetch(query)
            except asyncpg.InsufficientPrivilegeError:
                raise LamassuError(
                    "lamassu.cash_units_forbidden", user=self.settings.user
                ) from None
            except (asyncpg.PostgresError, OSError, asyncio.TimeoutError) as exc:
                raise _db_error(exc, self.settings) from None

        rows = await fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_name IN ('devices', 'user_config') "
            "AND table_schema = ANY(current_schemas(false))"
        )
        columns: dict[str, set[str]] = {}
        for row in rows:
            columns.setdefault(row["table_name"], set()).add(row["column_name"])
        device_columns = columns.get("devices", set())
        if "device_id" not in device_columns:
            return [], {}
        wanted = [
            *(f"cassette{i}" for i in range(1, 5)),
            *(f"recycler{i}" for i in range(1, 7)),
            "number_of_cassettes",
            "number_of_recyclers",
            "name",
        ]
        # Column names come from the list above, never from input.
        selected = ["device_id::text AS device_id"] + [
            name for name in wanted if name in device_columns
        ]
        devices = [
            dict(row)
            for row in await fetch(
                # Every machine (one row each): no cap, or the 201st
                # machine's cash would be missing from the drift.
                f"SELECT {', '.join(selected)} FROM devices ORDER BY device_id"
            )
        ]
        config: dict[str, Any] = {}
        config_columns = columns.get("user_config", set())
        if {"type", "data"} <= config_columns:
            valid = " AND valid" if "valid" in config_columns else ""
            rows = await fetch(
                "SELECT data::text AS data FROM user_config "
                f"WHERE type = 'config'{valid} ORDER BY id DESC LIMIT 1"
            )
            if rows and rows[0]["data"] and len(rows[0]["data"]) < 5_000_000:
                try:
                    data = json.loads(rows[0]["data"])
                except ValueError:
                    data = {}
                inner = data.get("config") if isinstance(data, dict) else None
                if isinstance(inner, dict):
                    # Only what the cassettes need: nothing else of Lamassu's
                    # config is kept.
                    config = {
                        k: v
                        for k, v in inner.items()
                        if k.startswith("cashOut_")
                        or k in ("locale_fiatCurrency", "locale_overrides")
                    }
        return devices, config

    async def server_time(self) -> tuple[datetime, str]:
        rows = await self._fetch(
            "SELECT now() AS now, current_setting('TimeZone') AS tz"
        )
        return rows[0]["now"], rows[0]["tz"]


async def check_connection(settings: LamassuSettings) -> list[ConnectionStep]:
    """Each step the extension depends on, stopping at the first failure. The
    operator reads the steps now: names and messages are in the language of the
    request being served (a failure's driver text stays as the driver wrote it)."""
    steps: list[ConnectionStep] = []
    client = LamassuClient(settings)

    def failed(step: str, exc: LamassuError) -> None:
        steps.append(ConnectionStep(text(step), False, exc.message.render()))

    def passed(step: str, code: str, **params: Any) -> None:
        steps.append(ConnectionStep(text(step), True, text(code, **params)))

    try:
        if settings.use_ssh_tunnel:
            try:
                await client.open_tunnel()
            except LamassuError as exc:
                failed("lamassu.step.ssh_tunnel", exc)
                return steps
            passed(
                "lamassu.step.ssh_tunnel",
                "lamassu.tunnel_ok",
                ssh_host=settings.ssh_host,
                ssh_port=settings.ssh_port,
                ssh_user=settings.ssh_username,
                host=settings.host,
                port=settings.port,
            )
            host, port = "127.0.0.1", client._listener.get_port()  # type: ignore[union-attr]
        else:
            host, port = settings.host, settings.port
        try:
            await client.login(host, port)
        except LamassuError as exc:
            failed("lamassu.step.database_login", exc)
            return steps
        passed(
            "lamassu.step.database_login",
            "lamassu.login_ok",
            database=settings.database,
            user=settings.user,
        )
        try:
            await client.cash_out_columns()
            await client._fetch(f"SELECT 1 FROM {CASH_OUT_TABLE} LIMIT 1")
        except LamassuError as exc:
            failed("lamassu.step.table_access", exc)
            return steps
        passed("lamassu.step.table_access", "lamassu.table_ok", table=CASH_OUT_TABLE)
        try:
            rows = await client._fetch(f"SELECT count(*) AS n FROM {CASH_OUT_TABLE}")
        except LamassuError as exc:
            failed("lamassu.step.row_count", exc)
            return steps
        passed("lamassu.step.row_count", "lamassu.row_count_ok", count=rows[0]["n"])
        try:
            now, zone = await client.server_time()
        except LamassuError as exc:
            failed("lamassu.step.server_time", exc)
            return steps
        drift = (now - datetime.now(timezone.utc)).total_seconds()
        steps.append(
            ConnectionStep(
                text("lamassu.step.server_time"),
                abs(drift) < 300,
                text(
                    "lamassu.server_time_ok",
                    now=now.isoformat(),
                    zone=zone,
                    drift=f"{drift:+.0f}",
                ),
            )
        )
        return steps
    finally:
        await client.close()
