"""A real SMTP server on 127.0.0.1 (aiosmtpd, with STARTTLS and AUTH, as LNbits'
email channel requires: it always calls starttls() and login()), configured as
LNbits' notification email channel. The mailbox keeps every message."""

from __future__ import annotations

import asyncio
import datetime
import email
import ipaddress
import socket
import ssl
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SMTP_USER = "lnbits-notifier"
SMTP_PASSWORD = "smtp-Secret-55x"
FROM = "lnbits@example.com"
OPERATOR = "operator@example.com"


@dataclass
class Mail:
    to: list[str]
    subject: str
    body: str


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Mail] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content)
        body = ""
        for part in message.walk():
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                body += payload.decode() if isinstance(payload, bytes) else ""
        if body.startswith("[LNbits]"):
            # LNbits' own admin notices (e.g. its funding-source watchdog's
            # "BALANCE DELTA CHANGED", sent when earlier tests moved sats)
            # reach the same admin address; the tests count the extension's.
            return "250 OK"
        with self._lock:
            self.messages.append(
                Mail(list(envelope.rcpt_tos), str(message["Subject"]), body)
            )
        return "250 OK"

    def to(self, address: str, match: str = "") -> list[Mail]:
        with self._lock:
            return [m for m in self.messages if address in m.to and match in m.body]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    async def wait_for(
        self,
        address: str,
        count: int,
        timeout: float = 15,
        quiet: float = 0.7,
        match: str = "",
    ) -> list[Mail]:
        """The messages to `address` (whose body has `match`) once there are
        `count` of them (or `timeout` passed) and then no more arrived for
        `quiet` seconds, so a duplicate would be seen."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.to(address, match)) < count:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(quiet)
        return self.to(address, match)


def _self_signed(folder: Path) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def smtp_server():
    """Start the server and point LNbits' email notifications at it (every
    other channel off); restore LNbits' settings afterwards."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
    from lnbits.settings import settings

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == SMTP_USER.encode()
            and auth_data.password == SMTP_PASSWORD.encode()
        )
        return AuthResult(success=ok)

    mailbox = Mailbox()
    folder = Path(tempfile.mkdtemp(prefix="smtp-"))
    port = _free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=_self_signed(folder),
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    keys = {
        "lnbits_email_notifications_enabled": True,
        "lnbits_email_notifications_email": FROM,
        "lnbits_email_notifications_username": SMTP_USER,
        "lnbits_email_notifications_password": SMTP_PASSWORD,
        "lnbits_email_notifications_server": "127.0.0.1",
        "lnbits_email_notifications_port": port,
        "lnbits_email_notifications_to_emails": [OPERATOR],
        "lnbits_telegram_notifications_enabled": False,
        "lnbits_nostr_notifications_enabled": False,
    }
    saved = {key: getattr(settings, key) for key in keys}
    try:
        for key, value in keys.items():
            setattr(settings, key, value)
        yield mailbox
    finally:
        for key, value in saved.items():
            setattr(settings, key, value)
        controller.stop()


@contextmanager
def silent_alerts():
    """Alerts opened meanwhile are marked sent but not sent: what earlier tests
    (or files) left holding is not the mail a test expects."""
    from satmachineadmin import alerts

    async def nothing(*_args, **_kw) -> None:
        return None

    real = alerts._send_admin, alerts._send_client
    alerts._send_admin, alerts._send_client = nothing, nothing
    try:
        yield
    finally:
        alerts._send_admin, alerts._send_client = real
