"""The Lamassu integration against a real PostgreSQL holding Lamassu's
`cash_out_txs`, directly and through a real SSH server (asyncssh) on
127.0.0.1, with the real in-process LNbits paying the settlements."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import asyncssh
import pytest
import pytest_asyncio
from pg_server import start_postgres
from test_settlement_flow import _deactivate_all_clients, _setup

pytestmark = pytest.mark.asyncio(loop_scope="session")

HERE = Path(__file__).resolve().parent
DB_PASSWORD = "lamassu-db-Secret-7f3a"
SSH_PASSWORD = "ssh-Secret-pass-91c2"
SSH_USER = "atm"


@pytest.fixture(scope="module")
def lamassu_pg():
    server = start_postgres()
    server.create_database("lamassu")
    server.psql((HERE / "lamassu_schema.sql").read_text(), "lamassu")
    server.psql(
        f"CREATE ROLE reader LOGIN PASSWORD '{DB_PASSWORD}'; "
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader;",
        "lamassu",
    )
    server.create_database("not_lamassu")
    yield server
    server.stop()


def _insert_cash_out(server, bolt11: str, **fields) -> str:
    row = {
        "id": str(uuid.uuid4()),
        "device_id": "atm-1",
        "to_address": bolt11,
        "crypto_atoms": "17500",
        "crypto_code": "LN",
        "fiat": "100",
        "fiat_code": "GTQ",
        "status": "confirmed",
        "dispense": "true",
        "dispense_confirmed": "true",
        "commission_percentage": "0.05",
        "raw_ticker_price": "600000",
        "discount": "0",
        **{k: str(v) for k, v in fields.items()},
    }
    columns = ", ".join(row)
    values = ", ".join("'" + v.replace("'", "''") + "'" for v in row.values())
    server.psql(f"INSERT INTO cash_out_txs ({columns}) VALUES ({values})", "lamassu")
    return row["id"]


async def _configure(env, lamassu_pg, **overrides):
    from satmachineadmin import crud

    config = await crud.get_config()
    assert config
    body = {
        "host": "127.0.0.1",
        "port": lamassu_pg.port,
        "database_name": "lamassu",
        "username": "reader",
        "password": DB_PASSWORD,
        "use_ssh_tunnel": False,
        **overrides,
    }
    response = await env.api("PUT", f"/config/{config.id}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def _invoice(source_id: str, sats: int) -> tuple[str, str]:
    from lnbits.core.services import create_invoice

    invoice = await create_invoice(
        wallet_id=source_id, amount=sats, memo="Lamassu cash-out"
    )
    return invoice.bolt11, invoice.payment_hash


async def _pay(payer_id: str, bolt11: str) -> None:
    from lnbits.core.services import pay_invoice

    await pay_invoice(wallet_id=payer_id, payment_request=bolt11)


async def _settlement(payment_hash: str):
    from satmachineadmin import crud

    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement
    return settlement


@pytest_asyncio.fixture(loop_scope="session")
async def setup(env, lamassu_pg):
    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["50"])
    env.market("GTQ", 600_000)  # the market agrees with the rows' ticker
    await _configure(env, lamassu_pg)
    await env.fund(payer.id, 100_000)
    yield source, commission, payer, clients
    # Leave no Lamassu config behind for the other test files.
    from satmachineadmin import crud

    config = await crud.get_config()
    if config:
        config.host = ""
        await crud.update_config(config)


async def test_dispensed_cash_out_is_distributed(env, lamassu_pg, setup):
    source, commission, payer, clients = setup
    bolt11, payment_hash = await _invoice(source.id, 17_500)
    cash_out_id = _insert_cash_out(lamassu_pg, bolt11)
    await _pay(payer.id, bolt11)
    await env.settle()
    settlement = await _settlement(payment_hash)
    assert settlement.status == "completed", settlement.status_detail
    assert settlement.data_source == "lamassu"
    assert settlement.lamassu_transaction_id == cash_out_id
    assert settlement.device_id == "atm-1"
    assert settlement.fiat_amount == Decimal("100.00")
    # Principal at the ticker: 100 GTQ at 600,000 GTQ/BTC = 16,667 sats.
    assert settlement.principal_sats == 16_667
    assert settlement.commission_sats == 833
    client_sats = await env.balance(clients[0][1].id)
    assert client_sats == 8_333  # its whole 50 GTQ balance, capped
    assert await env.balance(commission.id) == 833
    orphan = settlement.orphan_sats
    assert client_sats + 833 + orphan == 17_500
    assert await env.balance(source.id) == orphan


async def test_undispensed_waits_then_completes(env, lamassu_pg, setup):
    source, _, payer, clients = setup
    bolt11, payment_hash = await _invoice(source.id, 17_500)
    cash_out_id = _insert_cash_out(
        lamassu_pg, bolt11, dispense="false", dispense_confirmed="false"
    )
    await _pay(payer.id, bolt11)
    await env.settle()
    settlement = await _settlement(payment_hash)
    assert settlement.status == "waiting_dispense", settlement.status_detail
    assert await env.balance(clients[0][1].id) == 0
    lamassu_pg.psql(
        "UPDATE cash_out_txs SET dispense = true, dispense_confirmed = true "
        f"WHERE id = '{cash_out_id}'",
        "lamassu",
    )
    response = await env.api("POST", "/manual-poll")
    assert response.status_code == 200, response.text
    settlement = await _settlement(payment_hash)
    assert settlement.status == "completed", settlement.status_detail
    assert await env.balance(clients[0][1].id) == 8_333


async def test_missing_row_matches_late(env, lamassu_pg, setup):
    source, _, payer, clients = setup
    bolt11, payment_hash = await _invoice(source.id, 17_500)
    await _pay(payer.id, bolt11)
    await env.settle()
    assert (await _settlement(payment_hash)).status == "waiting_data"
    _insert_cash_out(lamassu_pg, bolt11)
    response = await env.api("POST", "/manual-poll")
    assert response.status_code == 200, response.text
    report = response.json()["lamassu_poll"]
    assert report and report["checked"] >= 1
    assert (await _settlement(payment_hash)).status == "completed"
    assert await env.balance(clients[0][1].id) == 8_333


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "rejected", "dispense": "false", "dispense_confirmed": "false"},
        {"dispense": "true", "dispense_confirmed": "false", "error": "jammed"},
    ],
)
async def test_never_dispensed_is_flagged(env, lamassu_pg, setup, fields):
    source, _, payer, clients = setup
    bolt11, payment_hash = await _invoice(source.id, 17_500)
    _insert_cash_out(lamassu_pg, bolt11, **fields)
    await _pay(payer.id, bolt11)
    await env.settle()
    settlement = await _settlement(payment_hash)
    assert settlement.status == "flagged", settlement.status_detail
    assert "never dispensed" in settlement.status_detail
    assert await env.balance(clients[0][1].id) == 0
    # The operator sees it and can settle it by hand.
    response = await env.api(
        "PUT",
        f"/settlements/{settlement.id}/dismiss",
        json={"reason": "refunded to the customer"},
    )
    assert response.status_code == 200, response.text


async def test_poll_lists_cash_outs_without_a_settlement(env, lamassu_pg, setup):
    source, _, _, _ = setup
    bolt11, _ = await _invoice(source.id, 17_500)
    onchain = _insert_cash_out(
        lamassu_pg, "bc1qexampleaddressxxxxxxxxxxxxxxxxxxxxxx", crypto_code="BTC"
    )
    unpaid = _insert_cash_out(lamassu_pg, bolt11)
    before = [await env.balance(w.id) for w in (source,)]
    response = await env.api("POST", "/manual-poll")
    assert response.status_code == 200, response.text
    report = response.json()["lamassu_poll"]
    unmatched = {row["id"]: row["reason"] for row in report["unmatched"]}
    assert "on-chain" in unmatched[onchain]
    assert unpaid in unmatched
    # Listed, never minted.
    assert [await env.balance(w.id) for w in (source,)] == before


async def test_poll_reads_every_cash_out_not_the_first_1000(env, lamassu_pg, setup):
    """2,500 dispensed on-chain cash-outs since the last poll, all created at
    the same instant (ties on the sort key): the poll lists every one, once.
    It used to read the oldest 1000 (lamassu.MAX_ROWS) and move its
    checkpoint past the rest."""
    lamassu_pg.psql(
        "INSERT INTO cash_out_txs (id, device_id, to_address, crypto_atoms, "
        "crypto_code, fiat, fiat_code, status, dispense, dispense_confirmed, "
        "created) SELECT gen_random_uuid(), 'atm-bulk', 'bc1qbulk' || g, 1000, "
        "'BTC', 10, 'GTQ', 'confirmed', true, true, now() - interval '1 hour' "
        "FROM generate_series(1, 2500) g",
        "lamassu",
    )
    try:
        response = await env.api("POST", "/manual-poll")
        assert response.status_code == 200, response.text
        report = response.json()["lamassu_poll"]
        bulk = [r["id"] for r in report["unmatched"] if r["device_id"] == "atm-bulk"]
        assert len(bulk) == len(set(bulk)) == 2_500
    finally:
        lamassu_pg.psql(
            "DELETE FROM cash_out_txs WHERE device_id = 'atm-bulk'", "lamassu"
        )


async def test_cash_units_read_every_machine(env, lamassu_pg, setup):
    """250 machines on one Lamassu server: the drift reads every one's
    cassettes (the devices query stopped at 200)."""
    from satmachineadmin import crud
    from satmachineadmin.lamassu_source import _client_for

    lamassu_pg.psql(
        "INSERT INTO devices (device_id, name, cassette1, number_of_cassettes) "
        "SELECT 'bulk-dev-' || g, 'Bulk', 1, 1 FROM generate_series(1, 250) g",
        "lamassu",
    )
    try:
        config = await crud.get_config()
        assert config
        async with _client_for(config) as client:
            devices, _ = await client.cash_units()
        bulk = [d for d in devices if str(d["device_id"]).startswith("bulk-dev-")]
        assert len(bulk) == 250
    finally:
        lamassu_pg.psql(
            "DELETE FROM devices WHERE device_id LIKE 'bulk-dev-%'", "lamassu"
        )


async def test_connection_steps(env, lamassu_pg, setup):
    response = await env.api("POST", "/test-connection")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["success"] is True, result
    names = [step["name"] for step in result["steps"]]
    assert names == ["Database login", "Table access", "Row count", "Server time"]
    # The test server runs in America/Guatemala, as Lamassu servers often do.
    assert "time zone America/Guatemala" in result["steps"][-1]["message"]

    await _configure(env, lamassu_pg, password="wrong-password")
    result = (await env.api("POST", "/test-connection")).json()
    assert result["success"] is False
    assert "wrong user or password" in result["steps"][-1]["message"]

    await _configure(env, lamassu_pg, database_name="not_lamassu")
    result = (await env.api("POST", "/test-connection")).json()
    assert [s["ok"] for s in result["steps"]] == [True, False]
    assert "cash_out_txs not found" in result["steps"][-1]["message"]

    await _configure(env, lamassu_pg, port=1)
    result = (await env.api("POST", "/test-connection")).json()
    assert "cannot reach the database" in result["steps"][-1]["message"]
    await _configure(env, lamassu_pg)


# ----------------------------------------------------------------- SSH tunnel


class _SSHServer(asyncssh.SSHServer):
    def __init__(self, authorized: asyncssh.SSHKey):
        self.authorized = authorized

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == SSH_USER and password == SSH_PASSWORD

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return (
            username == SSH_USER
            and key.public_data == self.authorized.convert_to_public().public_data
        )

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        # Forward only to the database, as an ATM server's sshd would.
        return dest_host in ("127.0.0.1", "localhost")


@pytest_asyncio.fixture(loop_scope="session")
async def ssh_server():
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        server_factory=lambda: _SSHServer(client_key),
    )
    port = server.sockets[0].getsockname()[1]
    known_hosts = (
        f"[127.0.0.1]:{port} "
        + host_key.export_public_key("openssh").decode().strip()
        + "\n"
    )
    yield port, client_key, known_hosts
    server.close()
    await server.wait_closed()


async def test_ssh_tunnel_with_key_and_known_hosts(env, lamassu_pg, setup, ssh_server):
    port, client_key, known_hosts = ssh_server
    private = client_key.export_private_key("openssh").decode()
    await _configure(
        env,
        lamassu_pg,
        use_ssh_tunnel=True,
        ssh_host="127.0.0.1",
        ssh_port=port,
        ssh_username=SSH_USER,
        ssh_private_key=private,
        ssh_known_hosts=known_hosts,
    )
    result = (await env.api("POST", "/test-connection")).json()
    assert result["success"] is True, result
    assert result["steps"][0]["name"] == "SSH tunnel"

    # And a settlement matched through the tunnel.
    source, _, payer, _ = setup
    bolt11, payment_hash = await _invoice(source.id, 17_500)
    _insert_cash_out(lamassu_pg, bolt11)
    await _pay(payer.id, bolt11)
    await env.settle()
    assert (await _settlement(payment_hash)).status == "completed"

    # A wrong key is refused with a clear message.
    wrong = asyncssh.generate_private_key("ssh-ed25519")
    await _configure(
        env,
        lamassu_pg,
        use_ssh_tunnel=True,
        ssh_host="127.0.0.1",
        ssh_port=port,
        ssh_username=SSH_USER,
        ssh_private_key=wrong.export_private_key("openssh").decode(),
        ssh_password="",
        ssh_known_hosts=known_hosts,
    )
    result = (await env.api("POST", "/test-connection")).json()
    assert result["success"] is False
    assert result["steps"][0]["name"] == "SSH tunnel"
    assert "wrong username, password or key" in result["steps"][0]["message"]

    # A host key that is not the known one is refused too.
    other_host = asyncssh.generate_private_key("ssh-ed25519")
    await _configure(
        env,
        lamassu_pg,
        use_ssh_tunnel=True,
        ssh_private_key=private,
        ssh_known_hosts=f"[127.0.0.1]:{port} "
        + other_host.export_public_key("openssh").decode(),
    )
    result = (await env.api("POST", "/test-connection")).json()
    assert result["success"] is False
    assert "known hosts" in result["steps"][0]["message"]

    # An unreadable key says so.
    await _configure(
        env,
        lamassu_pg,
        use_ssh_tunnel=True,
        ssh_private_key="not a key",
        ssh_known_hosts="",
    )
    result = (await env.api("POST", "/test-connection")).json()
    assert "could not be read" in result["steps"][0]["message"]
    await _configure(env, lamassu_pg, use_ssh_tunnel=False)


async def test_ssh_tunnel_with_password(env, lamassu_pg, setup, ssh_server):
    port, _, _ = ssh_server
    await _configure(
        env,
        lamassu_pg,
        use_ssh_tunnel=True,
        ssh_host="127.0.0.1",
        ssh_port=port,
        ssh_username=SSH_USER,
        ssh_password=SSH_PASSWORD,
        ssh_private_key="",
        ssh_known_hosts="",
    )
    result = (await env.api("POST", "/test-connection")).json()
    assert result["success"] is True, result
    await _configure(env, lamassu_pg, use_ssh_tunnel=True, ssh_password="wrong")
    result = (await env.api("POST", "/test-connection")).json()
    assert "wrong username, password or key" in result["steps"][0]["message"]
    await _configure(env, lamassu_pg, use_ssh_tunnel=False)


async def test_no_response_reveals_a_secret(env, lamassu_pg, setup, ssh_server):
    port, client_key, _ = ssh_server
    private = client_key.export_private_key("openssh").decode()
    key_body = private.splitlines()[1]
    secrets = [DB_PASSWORD, SSH_PASSWORD, key_body, "wrong-password"]
    responses = []
    from satmachineadmin import crud

    config = await crud.get_config()
    assert config
    body = {
        "host": "127.0.0.1",
        "port": lamassu_pg.port,
        "database_name": "lamassu",
        "username": "reader",
        "password": DB_PASSWORD,
        "use_ssh_tunnel": True,
        "ssh_host": "127.0.0.1",
        "ssh_port": port,
        "ssh_username": SSH_USER,
        "ssh_password": SSH_PASSWORD,
        "ssh_private_key": private,
    }
    responses.append(await env.api("PUT", f"/config/{config.id}", json=body))
    responses.append(await env.api("GET", "/config"))
    responses.append(await env.api("POST", "/test-connection"))
    responses.append(await env.api("POST", "/manual-poll"))
    responses.append(await env.api("GET", "/summary"))
    responses.append(await env.api("GET", "/settlements"))
    await _configure(env, lamassu_pg, password="wrong-password", use_ssh_tunnel=False)
    responses.append(await env.api("POST", "/test-connection"))
    responses.append(await env.api("POST", "/manual-poll"))
    responses.append(await env.http.get("/openapi.json"))
    for response in responses:
        assert response.status_code < 500, response.text
        for secret in secrets:
            assert secret not in response.text, (response.url, secret)
    public = (await env.api("GET", "/config")).json()
    assert public["password_set"] is True
    assert public["ssh_password_set"] is True
    assert public["ssh_private_key_set"] is True
    await _configure(env, lamassu_pg)
