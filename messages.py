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
_SETTLEMENTS: dict[str, dict[str, str]] = {
    # A settlement's status detail (transaction_processor.py).
    "settlement.no_cash_out_data": {
        "en": "no cash-out data found yet; enter it by hand",
        "es": "aún no se encontraron datos del retiro; ingréselos a mano",
    },
    "settlement.source_unavailable": {
        "en": "{source} unavailable: {error}",
        "es": "{source} no disponible: {error}",
    },
    "settlement.cash_out_from": {
        "en": "cash-out data from {source}",
        "es": "datos del retiro de {source}",
    },
    "settlement.plan": {
        "en": "{paid} of {clients} clients paid {sats} sats, commission "
        "{commission} sats",
        "es": "{paid} de {clients} clientes recibieron {sats} sats, comisión "
        "{commission} sats",
    },
    "settlement.plan_orphan": {
        "en": "{paid} of {clients} clients paid {sats} sats, commission "
        "{commission} sats, orphan {orphan} sats",
        "es": "{paid} de {clients} clientes recibieron {sats} sats, comisión "
        "{commission} sats, huérfano {orphan} sats",
    },
    "settlement.payouts_failed": {
        "en": "{count} payout(s) failed",
        "es": "{count} pago(s) fallido(s)",
    },
    "settlement.commission_pending": {
        "en": "commission pending: {error}",
        "es": "comisión pendiente: {error}",
    },
    "settlement.commission_failed": {
        "en": "commission failed: {error}",
        "es": "comisión fallida: {error}",
    },
    "settlement.commission_not_paid_yet": {
        "en": "not paid yet",
        "es": "aún no pagada",
    },
    "settlement.retry_when_fixed": {
        "en": "{problems}; retry when fixed",
        "es": "{problems}; reintente cuando esté corregido",
    },
    "settlement.scheduled": {
        "en": "{count} fixed-mode payout(s) scheduled for {due} UTC",
        "es": "{count} pago(s) del modo fijo programado(s) para el {due} UTC",
    },
    "settlement.accepted": {
        "en": "accepted by the operator: {note}",
        "es": "aceptada por el operador: {note}",
    },
    "settlement.dismissed": {
        "en": "dismissed: {reason}",
        "es": "descartada: {reason}",
    },
    "settlement.stale": {
        "en": "still waiting after {hours} h ({detail}); enter the cash-out data, "
        "dismiss it, or retry to look it up once more",
        "es": "sigue esperando después de {hours} h ({detail}); ingrese los datos "
        "del retiro, descártela o reintente para buscarla una vez más",
    },
    # Why a cash-out is flagged or waits (cashout.py, lamassu_source.py).
    "cash_out.bitspire_invalid": {
        "en": "invalid bitSpire metadata: {error}",
        "es": "metadatos de bitSpire no válidos: {error}",
    },
    "cash_out.bitspire_unreadable": {
        "en": "unreadable bitSpire metadata: {error}",
        "es": "metadatos de bitSpire ilegibles: {error}",
    },
    "cash_out.bitspire_found": {
        "en": "from the payment's bitSpire metadata",
        "es": "de los metadatos de bitSpire del pago",
    },
    "cash_out.sats_not_integer": {
        "en": "{name} must be an integer number of sats",
        "es": "{name} debe ser un número entero de sats",
    },
    "cash_out.out_of_range": {
        "en": "{name} is out of range",
        "es": "{name} está fuera de rango",
    },
    "cash_out.missing": {"en": "{name} is missing", "es": "falta {name}"},
    "cash_out.not_a_number": {
        "en": "{name} is not a number",
        "es": "{name} no es un número",
    },
    "cash_out.implausible_number": {
        "en": "{name} is not a plausible number",
        "es": "{name} no es un número creíble",
    },
    "cash_out.positive_at_most": {
        "en": "{name} must be positive and at most {maximum}",
        "es": "{name} debe ser positivo y como máximo {maximum}",
    },
    "cash_out.bill_entries": {
        "en": "bills must be {{denomination: count}} entries",
        "es": "los billetes deben ser entradas {{denominación: cantidad}}",
    },
    "cash_out.bills_shape": {
        "en": "bills must be a list or an object",
        "es": "los billetes deben ser una lista o un objeto",
    },
    "cash_out.too_many_bills": {
        "en": "too many bill entries",
        "es": "demasiadas entradas de billetes",
    },
    "cash_out.bill_count": {
        "en": "bill count must be a whole number",
        "es": "la cantidad de billetes debe ser un número entero",
    },
    "cash_out.bills_nothing": {
        "en": "the bills add up to nothing",
        "es": "los billetes no suman nada",
    },
    "cash_out.currency_code": {
        "en": "currency must be a 3-letter code",
        "es": "la moneda debe ser un código de 3 letras",
    },
    "cash_out.no_fiat": {
        "en": "no fiat amount can be derived",
        "es": "no se puede obtener un monto en moneda local",
    },
    "cash_out.implausible_fiat": {
        "en": "the fiat amount {fiat} is implausible (over {maximum})",
        "es": "el monto en moneda local {fiat} no es creíble (más de {maximum})",
    },
    "cash_out.principal_mismatch": {
        "en": "reported principal {principal} sats does not match {fiat} "
        "{currency} at {rate} ({expected} sats)",
        "es": "el principal reportado de {principal} sats no corresponde a {fiat} "
        "{currency} a {rate} ({expected} sats)",
    },
    "cash_out.fee_differs": {
        "en": "reported fee {fee} sats differs from the expected {expected} sats "
        "({percent} commission)",
        "es": "la comisión reportada de {fee} sats difiere de los {expected} sats "
        "esperados ({percent} de comisión)",
    },
    "cash_out.price_off": {
        "en": "its price {price} {currency}/BTC is {off}% away from {reference} "
        "({source}); more than the {tolerance}% allowed: accept it or correct it",
        "es": "su precio de {price} {currency}/BTC está a {off}% de {reference} "
        "({source}); más del {tolerance}% permitido: acéptelo o corríjalo",
    },
    "cash_out.price_unchecked": {
        "en": "its price {price} {currency}/BTC cannot be checked: {source}; "
        "accept it or correct it",
        "es": "su precio de {price} {currency}/BTC no se puede verificar: "
        "{source}; acéptelo o corríjalo",
    },
    "cash_out.no_principal": {
        "en": "the cash-out has no principal: its price cannot be checked",
        "es": "el retiro no tiene principal: su precio no se puede verificar",
    },
    "rate.source_lnbits": {
        "en": "LNbits' exchange rate",
        "es": "el tipo de cambio de LNbits",
    },
    "rate.source_median": {
        "en": "the median of the last {count} settlement(s) in {currency}",
        "es": "la mediana de la(s) última(s) {count} liquidación(es) en {currency}",
    },
    "rate.source_none": {
        "en": "no LNbits exchange rate for {currency} and no settlement in "
        "{currency} in the last {days} days",
        "es": "no hay tipo de cambio de LNbits para {currency} ni liquidaciones en "
        "{currency} en los últimos {days} días",
    },
    "lamassu_cash_out.found": {
        "en": "Lamassu cash-out {id}",
        "es": "retiro de Lamassu {id}",
    },
    "lamassu_cash_out.amount_mismatch": {
        "en": "Lamassu cash-out {id} is for {atoms} sats but {sats} were paid",
        "es": "el retiro de Lamassu {id} es por {atoms} sats pero se pagaron {sats}",
    },
    "lamassu_cash_out.waiting": {
        "en": "Lamassu cash-out {id}: cash not confirmed dispensed yet "
        "(status {status})",
        "es": "retiro de Lamassu {id}: aún no se confirma la entrega del efectivo "
        "(estado {status})",
    },
    "lamassu_cash_out.never_dispensed": {
        "en": "Lamassu cash-out {id} was paid but its cash was never dispensed "
        "(status {status}): hold the sats for a refund, or enter the fiat that "
        "left the machine",
        "es": "el retiro de Lamassu {id} se pagó pero su efectivo nunca se entregó "
        "(estado {status}): guarde los sats para un reembolso, o ingrese el "
        "efectivo que salió del cajero",
    },
    "lamassu_cash_out.never_dispensed_error": {
        "en": "Lamassu cash-out {id} was paid but its cash was never dispensed "
        "(status {status}, error {error}): hold the sats for a refund, or enter "
        "the fiat that left the machine",
        "es": "el retiro de Lamassu {id} se pagó pero su efectivo nunca se entregó "
        "(estado {status}, error {error}): guarde los sats para un reembolso, o "
        "ingrese el efectivo que salió del cajero",
    },
    "lamassu_cash_out.price_mismatch": {
        "en": "Lamassu cash-out {id}: {fiat} {currency} at {ticker} with "
        "{commission} commission does not give the {sats} sats paid",
        "es": "retiro de Lamassu {id}: {fiat} {currency} a {ticker} con "
        "{commission} de comisión no da los {sats} sats pagados",
    },
    # The upgrade line (upgrade_line.py).
    "upgrade.before_line": {
        "en": "paid before this extension first ran ({line}): the old extension "
        "handled payments then; process it only if it never did",
        "es": "pagada antes de que esta extensión funcionara por primera vez "
        "({line}): entonces la extensión anterior manejaba los pagos; procésela "
        "solo si nunca lo hizo",
    },
    "upgrade.split_by_old": {
        "en": "never split again: Lamassu cash-out {id} was already processed by "
        "the old extension (in its {table}); its sats were split then",
        "es": "nunca se reparte otra vez: el retiro de Lamassu {id} ya lo procesó "
        "la extensión anterior (en su {table}); sus sats se repartieron entonces",
    },
    "upgrade.released": {
        "en": "paid before the upgrade line; released by the operator",
        "es": "pagada antes de la línea de actualización; liberada por el operador",
    },
    "upgrade.dismissed": {
        "en": "dismissed (paid before the upgrade line): {reason}",
        "es": "descartada (pagada antes de la línea de actualización): {reason}",
    },
    # A payout's, a commission part's, an orphan's error.
    "transfer.target_is_source": {
        "en": "the target is the source wallet itself",
        "es": "el destino es la misma billetera de origen",
    },
    "transfer.wallet_deleted": {
        "en": "wallet {wallet} was deleted",
        "es": "la billetera {wallet} fue eliminada",
    },
    "transfer.wallet_not_found": {
        "en": "wallet {wallet} not found",
        "es": "no se encontró la billetera {wallet}",
    },
    "transfer.invoice_failed": {
        "en": "invoice failed: {error}",
        "es": "la factura falló: {error}",
    },
    "transfer.contended": {
        "en": "another run holds this payout; retry",
        "es": "otra ejecución tiene este pago; reintente",
    },
    "payout.client_not_found": {
        "en": "client not found",
        "es": "cliente no encontrado",
    },
    "payout.voided": {
        "en": "voided by the operator: {reason}",
        "es": "anulado por el operador: {reason}",
    },
    "payout.cancelled": {
        "en": "cancelled by the operator: {reason}",
        "es": "cancelado por el operador: {reason}",
    },
    "commission.wallet_gone_kept": {
        "en": "wallet {wallet} is gone; kept",
        "es": "la billetera {wallet} ya no existe; se queda en la billetera de origen",
    },
    "orphan.transfer_failed": {
        "en": "transfer failed: {error}",
        "es": "la transferencia falló: {error}",
    },
    "orphan.payout_missing": {
        "en": "the attribution's payout is missing",
        "es": "falta el pago de la atribución",
    },
    "orphan.client_payment_failed": {
        "en": "payment to the client failed: {error}",
        "es": "el pago al cliente falló: {error}",
    },
    "orphan.payment_failed": {"en": "payment failed", "es": "el pago falló"},
    "orphan.attribution_abandoned": {
        "en": "attribution abandoned: {reason}",
        "es": "atribución abandonada: {reason}",
    },
    # Audit history details (crud.audit_details_text): field names.
    "history.field.reason": {"en": "reason", "es": "motivo"},
    "history.field.note": {"en": "note", "es": "nota"},
    "history.field.notes": {"en": "notes", "es": "notas"},
    "history.field.wallet_id": {"en": "wallet", "es": "billetera"},
    "history.field.client_id": {"en": "client", "es": "cliente"},
    "history.field.error": {"en": "error", "es": "falla"},
    "history.field.flagged_for": {"en": "flagged for", "es": "marcada por"},
    "history.field.from": {"en": "from", "es": "de"},
    "history.field.to": {"en": "to", "es": "a"},
    "history.field.before": {"en": "before", "es": "antes"},
    "history.field.changes": {"en": "changes", "es": "cambios"},
    "history.field.amount": {"en": "amount", "es": "monto"},
    "history.field.currency": {"en": "currency", "es": "moneda"},
    "history.field.username": {"en": "name", "es": "nombre"},
    "history.field.lamassu_transaction_id": {
        "en": "Lamassu cash-out",
        "es": "retiro de Lamassu",
    },
    "history.field.in": {"en": "found in", "es": "encontrado en"},
    "history.field.reconciliation_id": {"en": "orphan", "es": "huérfano"},
    "history.field.recipients": {"en": "partners", "es": "socios"},
    "history.field.fiat_amount": {"en": "cash dispensed", "es": "efectivo entregado"},
    "history.field.fiat_code": {"en": "currency", "es": "moneda"},
    "history.field.principal_sats": {
        "en": "principal sats",
        "es": "sats del principal",
    },
}

# Lamassu connection test steps and errors (lamassu.py, lamassu_source.py).
_LAMASSU: dict[str, dict[str, str]] = {}

# Alerts: titles, messages, digests (alerts.py, drift.py).
_ALERTS: dict[str, dict[str, str]] = {}


def _merge(*sections: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for section in sections:
        for code, templates in section.items():
            if code in merged:
                raise ValueError(f"message code {code} defined twice")
            merged[code] = templates
    return merged


CATALOG = _merge(_COMMON, _API_ERRORS, _SETTLEMENTS, _LAMASSU, _ALERTS)
