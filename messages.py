"""Texts the server writes (API errors, why a settlement waits, Lamassu
connection steps, orphan history, alerts) in the reader's language.

Each text has a code and a template per language, side by side in `CATALOG`
so no language can lag behind (tests/test_messages.py checks that every code
has every language, with the same placeholders). The dashboard sends LNbits'
chosen language in `Accept-Language` with each request; the extension's
router reads it once per request (`read_request_language`) into a context
variable, so code that writes a text does not need the request: `text(code)`
and `MessageError(code)` write in the language of the request being served, and in
English where there is none (the settlement processor, recovery passes).

A text kept in the database (a settlement's status detail, an alert) is kept
twice: in English in its old column (what older readers and the client
extension see) and as a `Message` in JSON beside it, rendered again in the
reader's language when the API returns it.

Pure: no LNbits imports, no I/O.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

LANGUAGES = ("en", "es")
DEFAULT_LANGUAGE = "en"

_request_language: ContextVar[str] = ContextVar(
    "satmachineadmin_request_language", default=DEFAULT_LANGUAGE
)


def current_language() -> str:
    return _request_language.get()


def set_language(lang: str | None) -> None:
    """Use `lang` for the texts written from here on in this task (a request
    is one task); anything unsupported means English."""
    _request_language.set(lang if lang in LANGUAGES else DEFAULT_LANGUAGE)


def language_from_header(accept_language: str | None) -> str:
    """The first supported language of an `Accept-Language` header, by its
    q-values (`es-GT,es;q=0.9,en;q=0.8` → es); English when none is."""
    if not accept_language:
        return DEFAULT_LANGUAGE
    choices: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")[:20]):
        tag, _, rest = part.strip().partition(";")
        quality = 1.0
        if rest.strip().startswith("q="):
            try:
                quality = float(rest.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().split("-")[0].lower()
        if primary in LANGUAGES and quality > 0:
            choices.append((-quality, position, primary))
    return min(choices)[2] if choices else DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Message:
    """A text by code: rendered in any language, stored as JSON. A parameter
    may itself be a Message (rendered in the same language) or a list of
    Messages (joined with "; ")."""

    code: str
    params: dict[str, Any] = field(default_factory=dict)

    def render(self, lang: str | None = None) -> str:
        lang = lang if lang in LANGUAGES else current_language()
        templates = CATALOG.get(self.code)
        if templates is None:  # a code from a newer version, read by an older
            return self.code
        values = {k: _render_value(v, lang) for k, v in self.params.items()}
        try:
            return templates[lang].format(**values)
        except (KeyError, IndexError, ValueError):
            return templates[DEFAULT_LANGUAGE].format_map(_Lenient(values))

    def __str__(self) -> str:
        return self.render(current_language())

    def to_json(self) -> str:
        return json.dumps(_to_plain(self), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, raw: str | None) -> Message | None:
        """The stored message, or None for a row written before messages had
        codes (or anything unreadable: the English column is shown then)."""
        if not raw:
            return None
        try:
            value = _from_plain(json.loads(raw))
        except (ValueError, TypeError, AttributeError):
            return None
        return value if isinstance(value, Message) else None


def text(code: str, **params: Any) -> str:
    """The text of `code` in the language of the request being served."""
    return Message(code, params).render(current_language())


def localized(english: str | None, stored: str | None) -> str | None:
    """A stored text for the reader: its message rendered in the request's
    language when one was stored with it, else the English as it was."""
    message = Message.from_json(stored)
    return message.render(current_language()) if message else english


class MessageError(ValueError):
    """A ValueError whose text is written in the language of the request being
    served (English outside a request), with its code kept for callers that
    store or re-render it. Pure modules raise it for input they refuse."""

    def __init__(self, code: str, **params: Any) -> None:
        self.message = Message(code, params)
        super().__init__(self.message.render(current_language()))


def _render_value(value: Any, lang: str) -> Any:
    if isinstance(value, Message):
        return value.render(lang)
    if isinstance(value, (list, tuple)):
        return "; ".join(str(_render_value(v, lang)) for v in value)
    return value


def _to_plain(value: Any) -> Any:
    if isinstance(value, Message):
        return {"code": value.code, "params": _to_plain(value.params)}
    if isinstance(value, dict):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _from_plain(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"code", "params"}:
        return Message(str(value["code"]), _from_plain(value["params"]))
    if isinstance(value, dict):
        return {str(k): _from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    return value


class _Lenient(dict):
    """A missing placeholder prints as itself rather than failing: a stored
    message must always render, even if its template changed since."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


# ---------------------------------------------------------------- catalog
# One section per area, each its own dict, so areas are added without
# touching each other. A template is a `str.format` string; {name} are the
# message's params. Keep the Spanish natural, as written in Guatemala.

_COMMON: dict[str, dict[str, str]] = {
    "not_found.alert": {"en": "Alert not found.", "es": "Alerta no encontrada."},
    "not_found.client": {"en": "Client not found.", "es": "Cliente no encontrado."},
    "not_found.commission_payout": {
        "en": "Commission payout not found.",
        "es": "Pago de comisión no encontrado.",
    },
    "not_found.config": {
        "en": "Config not found.",
        "es": "Configuración no encontrada.",
    },
    "not_found.deposit": {
        "en": "Deposit not found.",
        "es": "Depósito no encontrado.",
    },
    "not_found.machine": {"en": "Machine not found.", "es": "Cajero no encontrado."},
    "not_found.payout": {"en": "Payout not found.", "es": "Pago no encontrado."},
    "not_found.reconciliation": {
        "en": "Reconciliation not found.",
        "es": "Conciliación no encontrada.",
    },
    "not_found.settlement": {
        "en": "Settlement not found.",
        "es": "Liquidación no encontrada.",
    },
    "not_found.transaction": {
        "en": "Transaction not found.",
        "es": "Transacción no encontrada.",
    },
    "not_found.wallet": {
        "en": "Wallet not found.",
        "es": "Billetera no encontrada.",
    },
}

# API errors (views_api*.py, auth.py, validation in models.py).
_API_ERRORS: dict[str, dict[str, str]] = {}

# Why a settlement waits, is flagged or failed; its history (transaction
# processor, upgrade line, orphan resolution).
_SETTLEMENTS: dict[str, dict[str, str]] = {}

# Lamassu connection test steps and errors (lamassu.py, lamassu_source.py).
_LAMASSU: dict[str, dict[str, str]] = {}

# Alerts: titles, messages, digests (alerts.py, drift.py).
_ALERTS: dict[str, dict[str, str]] = {
    # Titles, one per kind (alerts.KINDS).
    "alert.title.lamassu_down": {
        "en": "Lamassu database unreachable",
        "es": "Base de datos de Lamassu inaccesible",
    },
    "alert.title.payout_uncovered": {
        "en": "Payout the source wallet cannot cover",
        "es": "Pago que la billetera de origen no puede cubrir",
    },
    "alert.title.payout_failed": {
        "en": "Payout failed after its retries",
        "es": "Pago fallido después de sus reintentos",
    },
    "alert.title.settlement_flagged": {
        "en": "Settlement flagged for review",
        "es": "Liquidación marcada para revisión",
    },
    "alert.title.settlement_waiting": {
        "en": "Settlement waiting too long",
        "es": "Liquidación esperando demasiado tiempo",
    },
    "alert.title.orphan_new": {"en": "New orphan", "es": "Huérfano nuevo"},
    "alert.title.orphan_old": {
        "en": "Orphan still open",
        "es": "Huérfano aún abierto",
    },
    "alert.title.missed_payment": {
        "en": "Payment the listener missed",
        "es": "Pago que la escucha no recibió",
    },
    "alert.title.drift_untracked": {
        "en": "Untracked cash in the machines",
        "es": "Efectivo no registrado en las máquinas",
    },
    "alert.title.drift_orphan_week": {
        "en": "Orphan fiat this week",
        "es": "Fiat huérfano esta semana",
    },
    "alert.title.client_balance_empty": {
        "en": "Client balance fully converted",
        "es": "Saldo del cliente convertido por completo",
    },
    # Messages. {what} is one of the *.what texts below; ids, amounts and
    # errors come already written as code (`...`), amounts as 1,234.56.
    "alert.orphan.what": {
        "en": "{sats} sats ({fiat} {currency}) from settlement {settlement}, "
        "device {device}",
        "es": "{sats} sats ({fiat} {currency}) de la liquidación {settlement}, "
        "dispositivo {device}",
    },
    "alert.orphan_new.message": {
        "en": "{what}: not covered by any tracked client balance. "
        "Resolve it in Reconciliation.",
        "es": "{what}: no lo cubre ningún saldo de cliente registrado. "
        "Resuélvalo en Conciliación.",
    },
    "alert.orphan_old.message": {
        "en": "{what}: open for {age}.",
        "es": "{what}: abierto desde hace {age}.",
    },
    "alert.settlement.what": {
        "en": "settlement {settlement} of {sats} sats (device {device})",
        "es": "La liquidación {settlement} de {sats} sats (dispositivo {device})",
    },
    "alert.settlement_flagged.message": {
        "en": "{what} needs your review: {detail}. Nothing moves until you "
        "accept or correct it.",
        "es": "{what} necesita su revisión: {detail}. Nada se mueve hasta que "
        "usted la acepte o la corrija.",
    },
    "alert.settlement_waiting.message": {
        "en": "{what} is {status} for {age}: {detail}.",
        "es": "{what} está {status} desde hace {age}: {detail}.",
    },
    # A waiting settlement's status, as code (English: the status itself).
    "alert.status.pending": {"en": "`pending`", "es": "`pendiente`"},
    "alert.status.waiting_data": {
        "en": "`waiting_data`",
        "es": "`esperando datos`",
    },
    "alert.status.waiting_dispense": {
        "en": "`waiting_dispense`",
        "es": "`esperando entrega`",
    },
    "alert.status.stale": {"en": "`stale`", "es": "`vencida`"},
    "alert.payout.what": {
        "en": "payout {payout} of {sats} sats ({fiat} {currency}) to {client}, "
        "settlement {settlement}",
        "es": "El pago {payout} de {sats} sats ({fiat} {currency}) a {client}, "
        "liquidación {settlement}",
    },
    "alert.payout_uncovered.message": {
        "en": "{what}: the source wallet does not hold enough sats. It is "
        "retried every pass; add funds or cancel it.",
        "es": "{what}: la billetera de origen no tiene suficientes sats. Se "
        "reintenta en cada pasada; agregue fondos o cancélelo.",
    },
    "alert.payout_failed.message": {
        "en": "{what} failed {attempts} times: {error}.",
        "es": "{what} falló {attempts} veces: {error}.",
    },
    "alert.lamassu_down.message": {
        "en": "The Lamassu database ({where}) has been unreachable for {age}: "
        "{error}. Settlements wait for their cash-out data meanwhile.",
        "es": "La base de datos de Lamassu ({where}) lleva {age} inaccesible: "
        "{error}. Mientras tanto, las liquidaciones esperan sus datos de retiro.",
    },
    "alert.lamassu_down.ssh": {
        "en": "through the SSH tunnel",
        "es": "por el túnel SSH",
    },
    "alert.lamassu_down.direct": {"en": "directly", "es": "conexión directa"},
    "alert.unknown_error": {
        "en": "`unknown error`",
        "es": "`error desconocido`",
    },
    "alert.drift_untracked.message": {
        "en": "{untracked} {currency} in the machines is covered by no tracked "
        "client balance (cash {cash}, tracked balances {tracked}; threshold "
        "{threshold}). Record the deposits it belongs to before a large "
        "cash-out spends it.",
        "es": "{untracked} {currency} en las máquinas no los cubre ningún saldo "
        "de cliente registrado (efectivo {cash}, saldos registrados {tracked}; "
        "umbral {threshold}). Registre los depósitos a los que corresponden "
        "antes de que un retiro grande los gaste.",
    },
    "alert.drift_orphan_week.message": {
        "en": "{fiat} {currency} of orphans in the last 7 days (threshold "
        "{threshold}): cash-outs are spending cash no tracked balance covers.",
        "es": "{fiat} {currency} de huérfanos en los últimos 7 días (umbral "
        "{threshold}): los retiros están gastando efectivo que ningún saldo "
        "registrado cubre.",
    },
    "alert.client_balance_empty.message": {
        "en": "Your {currency} deposit is fully converted to bitcoin: your "
        "balance is 0.00. Top up with the operator to keep stacking.",
        "es": "Su depósito en {currency} ya se convirtió por completo a "
        "bitcoin: su saldo es 0.00. Recargue con el operador para seguir "
        "acumulando.",
    },
    "alert.missed_payment.message": {
        "en": "{sats} sats paid into the source wallet at {paid_at} UTC were "
        "found by the recovery scan, not the listener (settlement "
        "{settlement}). It is processed now; check LNbits' funding source if "
        "this repeats.",
        "es": "El escaneo de recuperación, no la escucha, encontró {sats} sats "
        "pagados a la billetera de origen el {paid_at} UTC (liquidación "
        "{settlement}). Ya se está procesando; revise la fuente de fondos de "
        "LNbits si esto se repite.",
    },
    # What is sent (LNbits' notifications), in the operator's chosen language.
    "alert.send.one": {
        "en": "DCA Admin: {title}: {message}",
        "es": "Administración DCA: {title}: {message}",
    },
    "alert.digest.header": {
        "en": "DCA Admin: {count} new alerts",
        "es": "Administración DCA: {count} alertas nuevas",
    },
    "alert.digest.more": {
        "en": "... and {count} more.",
        "es": "... y {count} más.",
    },
    "alert.digest.see": {
        "en": "See DCA Admin -> Alerts.",
        "es": "Vea Administración DCA -> Alertas.",
    },
    "alert.back_up": {
        "en": "DCA Admin: the Lamassu database is reachable again (alert open "
        "for {duration}).",
        "es": "Administración DCA: la base de datos de Lamassu está accesible "
        "de nuevo (alerta abierta durante {duration}).",
    },
    "alert.already_acknowledged": {
        "en": "Alert already acknowledged.",
        "es": "La alerta ya fue marcada como vista.",
    },
    # The machines' cassettes (drift.py): why a machine's cash is unreadable.
    "drift.denomination_not_number": {
        "en": "denomination is not a number",
        "es": "la denominación no es un número",
    },
    "drift.denomination_out_of_range": {
        "en": "denomination out of range",
        "es": "denominación fuera de rango",
    },
    "drift.denomination_decimals": {
        "en": "denomination has more than two decimals",
        "es": "la denominación tiene más de dos decimales",
    },
    "drift.count_invalid": {
        "en": "count must be a whole number 0..100000",
        "es": "la cantidad debe ser un número entero de 0 a 100000",
    },
    "drift.cassettes_list": {
        "en": "cassettes must be a list of 1..16 entries",
        "es": "los casetes deben ser una lista de 1 a 16 elementos",
    },
    "drift.cassette_entry": {
        "en": "each cassette must be {{denomination, count}}",
        "es": "cada casete debe ser {{denomination, count}} (denominación y "
        "cantidad)",
    },
    "drift.no_denomination": {
        "en": "{unit} has no denomination",
        "es": "{unit} no tiene denominación",
    },
    "drift.no_currency": {
        "en": "no fiat currency in Lamassu's config",
        "es": "no hay moneda fiat en la configuración de Lamassu",
    },
    "drift.unreadable_cassettes": {
        "en": "unreadable cassettes: {error}",
        "es": "casetes ilegibles: {error}",
    },
}


def _merge(*sections: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for section in sections:
        for code, templates in section.items():
            if code in merged:
                raise ValueError(f"message code {code} defined twice")
            merged[code] = templates
    return merged


CATALOG = _merge(_COMMON, _API_ERRORS, _SETTLEMENTS, _LAMASSU, _ALERTS)
