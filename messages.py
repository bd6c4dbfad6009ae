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
_API_ERRORS: dict[str, dict[str, str]] = {
    "config.source_is_client_wallet": {
        "en": "source_wallet_id: this is a DCA client's wallet; ATM settlements "
        "need a wallet of the operator's own.",
        "es": "source_wallet_id: es la billetera de un cliente DCA; las "
        "liquidaciones del cajero necesitan una billetera propia del operador.",
    },
    "config.source_is_partner_wallet": {
        "en": "source_wallet_id: this wallet receives commission (a commission "
        "partner's); choose another source wallet.",
        "es": "source_wallet_id: esta billetera recibe comisión (es de un socio "
        "de comisión); elija otra billetera de origen.",
    },
    "orphan.client_wallet_is_source": {
        "en": "client {username}'s wallet is a source wallet (ATM settlements "
        "arrive in it); give the client a wallet of its own",
        "es": "la billetera del cliente {username} es una billetera de origen "
        "(ahí llegan las liquidaciones del cajero); asígnele una billetera propia",
    },
    # Who may use the API (auth.py, views.py).
    "auth.page_admins_only": {
        "en": "The DCA admin is for the LNbits super user or admins.",
        "es": "El administrador DCA es solo para el superusuario o los "
        "administradores de LNbits.",
    },
    "auth.invalid_api_key": {"en": "Invalid API key.", "es": "Clave API inválida."},
    "auth.admins_only": {
        "en": "Only the LNbits super user or admins.",
        "es": "Solo el superusuario o los administradores de LNbits.",
    },
    "auth.missing_credentials": {
        "en": "Missing access token or API key.",
        "es": "Falta el token de acceso o la clave API.",
    },
    "auth.invoice_key_read_only": {
        "en": "An invoice key may read; writing needs an admin key.",
        "es": "Una clave de factura solo puede leer; para modificar se necesita "
        "una clave de administrador.",
    },
    # What a request may carry (auth.py).
    "request.body_too_large": {
        "en": "The request body is larger than {kb} KB.",
        "es": "El cuerpo de la solicitud supera los {kb} KB.",
    },
    "request.nul_character": {
        "en": "Text may not contain NUL (\\u0000) characters.",
        "es": "El texto no puede contener caracteres NUL (\\u0000).",
    },
    "request.too_deep": {
        "en": "The request is nested more than {levels} levels deep.",
        "es": "La solicitud tiene más de {levels} niveles de anidamiento.",
    },
    "request.invalid_sort": {
        "en": "Invalid sort field.",
        "es": "Campo de ordenamiento inválido.",
    },
    # Field validation (models.py validators; pydantic prefixes nothing in v1).
    "field.not_a_number": {"en": "must be a number", "es": "debe ser un número"},
    "field.not_finite": {
        "en": "must be a finite number",
        "es": "debe ser un número finito",
    },
    "field.not_positive": {
        "en": "must be greater than zero",
        "es": "debe ser mayor que cero",
    },
    "field.at_most": {
        "en": "must be at most {maximum}",
        "es": "debe ser como máximo {maximum}",
    },
    "field.two_decimals": {
        "en": "must have at most two decimal places",
        "es": "debe tener como máximo dos decimales",
    },
    "field.unknown_currency": {
        "en": "{value} is not a fiat currency LNbits knows (ISO 4217)",
        "es": "{value} no es una moneda fiat que LNbits conozca (ISO 4217)",
    },
    "field.unknown_time_zone": {
        "en": "{value!r} is not a known time zone",
        "es": "{value!r} no es una zona horaria conocida",
    },
    "field.wallet_not_found": {
        "en": "{field}: wallet not found.",
        "es": "{field}: billetera no encontrada.",
    },
    "field.may_not_be_null": {
        "en": "{fields}: may not be null.",
        "es": "{fields}: no puede ser nulo.",
    },
    # Clients and deposits (views_api.py).
    "client.wallet_is_source": {
        "en": "wallet_id: this is a source wallet (ATM settlements arrive in it); "
        "a client needs a wallet of their own.",
        "es": "wallet_id: esta es una billetera de origen (en ella llegan las "
        "liquidaciones del cajero); el cliente necesita una billetera propia.",
    },
    "client.wallet_registered": {
        "en": "This wallet is already registered as a DCA client.",
        "es": "Esta billetera ya está registrada como cliente DCA.",
    },
    "client.wallet_not_users": {
        "en": "wallet_id: not a wallet of this client's LNbits user.",
        "es": "wallet_id: no es una billetera del usuario de LNbits de este cliente.",
    },
    "client.limit_above_maximum": {
        "en": "fixed_mode_daily_limit: at most {maximum} {currency} a day "
        "(the configured maximum).",
        "es": "fixed_mode_daily_limit: como máximo {maximum} {currency} al día "
        "(el máximo configurado).",
    },
    "client.changed_meanwhile": {
        "en": "The client changed meanwhile; reload it.",
        "es": "El cliente cambió mientras tanto; vuelva a cargarlo.",
    },
    "client.fixed_needs_limit": {
        "en": "fixed_mode_daily_limit: a fixed-mode client needs a daily limit.",
        "es": "fixed_mode_daily_limit: un cliente en modo fijo necesita un límite "
        "diario.",
    },
    "deposit.edit_only_pending": {
        "en": "Only a pending deposit can be edited; this one is {status}.",
        "es": "Solo se puede editar un depósito pendiente; este está en estado "
        "{status}.",
    },
    "deposit.changed_meanwhile": {
        "en": "The deposit changed meanwhile; reload it.",
        "es": "El depósito cambió mientras tanto; vuelva a cargarlo.",
    },
    "deposit.already_status": {
        "en": "The deposit is already {status}.",
        "es": "El depósito ya está en estado {status}.",
    },
    "deposit.status_final": {
        "en": "A {status} deposit cannot change status.",
        "es": "Un depósito en estado {status} no puede cambiar de estado.",
    },
    "deposit.not_back_to_pending": {
        "en": "A deposit cannot go back to pending.",
        "es": "Un depósito no puede volver a estar pendiente.",
    },
    # Configuration and the fixed-mode schedule (views_api.py, fixed_mode.py).
    "config.changed_meanwhile": {
        "en": "The settings changed meanwhile; reload them.",
        "es": "La configuración cambió mientras tanto; vuelva a cargarla.",
    },
    "config.none_yet": {
        "en": "No configuration yet.",
        "es": "Todavía no hay configuración.",
    },
    "config.lamassu_incomplete": {
        "en": "Set the Lamassu database host, database name and user first.",
        "es": "Primero indique el host, el nombre y el usuario de la base de datos "
        "de Lamassu.",
    },
    "schedule.daily_needs_time": {
        "en": "fixed_delivery_time: required (HH:MM) for a daily delivery.",
        "es": "fixed_delivery_time: obligatorio (HH:MM) para una entrega diaria.",
    },
    "schedule.times_needs_count": {
        "en": "fixed_delivery_times: required (1-48) for deliveries N times a day.",
        "es": "fixed_delivery_times: obligatorio (1-48) para entregas N veces al "
        "día.",
    },
    "alert.already_acknowledged": {
        "en": "Alert already acknowledged.",
        "es": "La alerta ya fue marcada como vista.",
    },
    # Machines and commission recipients (views_api_machines.py, machines.py,
    # commission_split.py).
    "source.shared_with_client": {
        "en": "source_wallet_id: LNbits shares this wallet with wallet {wallet}, "
        "a DCA client's; ATM settlements need a wallet of the operator's own.",
        "es": "source_wallet_id: LNbits comparte esta billetera con la billetera "
        "{wallet}, de un cliente DCA; las liquidaciones del cajero necesitan una "
        "billetera propia del operador.",
    },
    "source.shared_with_partner": {
        "en": "source_wallet_id: LNbits shares this wallet with wallet {wallet}, "
        "which receives commission; choose another source wallet.",
        "es": "source_wallet_id: LNbits comparte esta billetera con la billetera "
        "{wallet}, que recibe comisión; elija otra billetera de origen.",
    },
    "config.commission_is_share_of_source": {
        "en": "commission_wallet_id: this wallet is a share of wallet {source}, "
        "a source wallet; the commission would pay itself.",
        "es": "commission_wallet_id: esta billetera es una billetera compartida "
        "de {source}, una billetera de origen; la comisión se pagaría a sí misma.",
    },
    "machine.source_wallet_is_client": {
        "en": "source_wallet_id: this is a DCA client's wallet.",
        "es": "source_wallet_id: esta es la billetera de un cliente DCA.",
    },
    "machine.source_wallet_gets_commission": {
        "en": "source_wallet_id: this wallet receives commission.",
        "es": "source_wallet_id: esta billetera recibe comisión.",
    },
    "machine.device_id_blank": {
        "en": "device_id: may not be blank.",
        "es": "device_id: no puede estar vacío.",
    },
    "machine.exists": {
        "en": "A machine with this id exists.",
        "es": "Ya existe un cajero con este id.",
    },
    "commission_payout.nothing_to_retry": {
        "en": "commission payout is {status}; nothing to retry",
        "es": "el pago de comisión está en estado {status}; no hay nada que "
        "reintentar",
    },
    "recipients.item": {
        "en": "recipient {index}: {error}",
        "es": "destinatario {index}: {error}",
    },
    "recipients.wallet_twice": {
        "en": "recipient {index}: wallet {wallet_id} is named twice",
        "es": "destinatario {index}: la billetera {wallet_id} aparece dos veces",
    },
    "recipients.wallet_not_found": {
        "en": "recipient {index}: wallet {wallet_id} not found",
        "es": "destinatario {index}: billetera {wallet_id} no encontrada",
    },
    "recipients.share_of_source": {
        "en": "recipient {index}: wallet {wallet_id} is a share of wallet "
        "{source}, a source wallet; the commission would pay itself",
        "es": "destinatario {index}: la billetera {wallet_id} es una billetera "
        "compartida de {source}, una billetera de origen; la comisión se "
        "pagaría a sí misma",
    },
    "recipients.source_wallet": {
        "en": "recipient {index}: wallet {wallet_id} is a source wallet; the "
        "commission would pay itself",
        "es": "destinatario {index}: la billetera {wallet_id} es una billetera de "
        "origen; la comisión se pagaría a sí misma",
    },
    "recipients.none": {
        "en": "at least one recipient is needed",
        "es": "se necesita al menos un destinatario",
    },
    "recipients.too_many": {
        "en": "at most {maximum} recipients",
        "es": "como máximo {maximum} destinatarios",
    },
    "recipients.total_not_100": {
        "en": "percentages add up to {total} %, not 100 %",
        "es": "los porcentajes suman {total} %, no 100 %",
    },
    "percent.not_a_number": {
        "en": "percent must be a number",
        "es": "el porcentaje debe ser un número",
    },
    "percent.unreadable": {
        "en": "percent {value} is not a number",
        "es": "el porcentaje {value} no es un número",
    },
    "percent.not_finite": {
        "en": "percent must be a finite number",
        "es": "el porcentaje debe ser un número finito",
    },
    "percent.out_of_range": {
        "en": "percent {number} must be above 0 and at most 100",
        "es": "el porcentaje {number} debe ser mayor que 0 y como máximo 100",
    },
    "percent.too_many_places": {
        "en": "percent {number} has more than {places} decimal places",
        "es": "el porcentaje {number} tiene más de {places} decimales",
    },
    "commission.sats_not_integer": {
        "en": "commission sats must be an integer",
        "es": "los sats de comisión deben ser un número entero",
    },
    "commission.sats_negative": {
        "en": "commission sats must not be negative",
        "es": "los sats de comisión no pueden ser negativos",
    },
    # The settlement split (allocation.py, cashout.py's manual cash-out).
    "allocation.sats_not_integer": {
        "en": "settlement sats must be an integer",
        "es": "los sats de la liquidación deben ser un número entero",
    },
    "allocation.sats_negative": {
        "en": "settlement sats must not be negative",
        "es": "los sats de la liquidación no pueden ser negativos",
    },
    "allocation.ticker_not_positive": {
        "en": "ticker price must be positive",
        "es": "el precio de referencia (ticker) debe ser positivo",
    },
    "allocation.fiat_negative": {
        "en": "fiat must not be negative",
        "es": "el monto fiat no puede ser negativo",
    },
    "allocation.commission_range": {
        "en": "effective commission must be in [0, 1)",
        "es": "la comisión efectiva debe estar en [0, 1)",
    },
    "allocation.principal_fee_negative": {
        "en": "principal and fee must not be negative",
        "es": "el principal y la comisión no pueden ser negativos",
    },
    "allocation.reported_mismatch": {
        "en": "principal {principal} + fee {fee} != paid {paid}",
        "es": "principal {principal} + comisión {fee} != pagado {paid}",
    },
    "allocation.rate_not_positive": {
        "en": "rate must be positive",
        "es": "el tipo de cambio debe ser positivo",
    },
    "allocation.split_negative": {
        "en": "split amounts must not be negative",
        "es": "los montos del reparto no pueden ser negativos",
    },
    "allocation.split_mismatch": {
        "en": "principal + commission must equal the settlement",
        "es": "principal + comisión debe ser igual a la liquidación",
    },
    "allocation.duplicate_clients": {
        "en": "duplicate client ids",
        "es": "ids de cliente duplicados",
    },
    "cash_out.principal_exceeds": {
        "en": "principal_sats {principal} exceeds the settlement's {sats} sats",
        "es": "principal_sats {principal} supera los {sats} sats de la liquidación",
    },
    "cash_out.give_one": {
        "en": "give principal_sats, raw_ticker_price or commission_percentage",
        "es": "indique principal_sats, raw_ticker_price o commission_percentage",
    },
    # State conflicts (ProcessingError: transaction_processor.py,
    # orphan_resolution.py, upgrade_line.py); the API answers 409.
    "conflict.settlement_changed_planning": {
        "en": "settlement changed while planning",
        "es": "la liquidación cambió mientras se planificaba",
    },
    "conflict.settlement_changed_retry": {
        "en": "settlement changed meanwhile; reload and retry",
        "es": "la liquidación cambió mientras tanto; vuelva a cargar e intente de "
        "nuevo",
    },
    "conflict.settlement_changed": {
        "en": "settlement changed meanwhile; reload",
        "es": "la liquidación cambió mientras tanto; vuelva a cargar",
    },
    "conflict.cash_out_not_allowed": {
        "en": "settlement is {status}; cash-out data can only be entered while it "
        "waits or is flagged",
        "es": "la liquidación está en estado {status}; los datos del retiro solo "
        "se pueden ingresar mientras espera o está marcada",
    },
    "conflict.accept_only_flagged": {
        "en": "settlement is {status}; only a flagged settlement can be accepted",
        "es": "la liquidación está en estado {status}; solo se puede aceptar una "
        "liquidación marcada",
    },
    "conflict.accept_incomplete": {
        "en": "this settlement has no complete cash-out data to accept; enter it "
        "instead",
        "es": "esta liquidación no tiene datos del retiro completos para aceptar; "
        "ingréselos",
    },
    "conflict.dismiss_not_allowed": {
        "en": "settlement is {status}; only a waiting or flagged settlement can be "
        "dismissed",
        "es": "la liquidación está en estado {status}; solo se puede descartar una "
        "liquidación en espera o marcada",
    },
    "conflict.nothing_to_retry": {
        "en": "settlement is {status}; nothing to retry",
        "es": "la liquidación está en estado {status}; no hay nada que reintentar",
    },
    "conflict.payout_nothing_to_cancel": {
        "en": "payout is {status}; nothing to cancel",
        "es": "el pago está en estado {status}; no hay nada que cancelar",
    },
    "conflict.payout_changed": {
        "en": "payout changed meanwhile; reload",
        "es": "el pago cambió mientras tanto; vuelva a cargar",
    },
    "conflict.payout_paid_after_all": {
        "en": "the payout was paid after all; reload",
        "es": "el pago sí se realizó; vuelva a cargar",
    },
    "conflict.orphan_changed": {
        "en": "the orphan changed meanwhile; reload",
        "es": "el huérfano cambió mientras tanto; vuelva a cargar",
    },
    "conflict.reconciliation_already": {
        "en": "reconciliation is already {status}",
        "es": "la conciliación ya está en estado {status}",
    },
    "conflict.orphan_already_sent": {
        "en": "this orphan was already sent by an earlier attempt; reload",
        "es": "este huérfano ya se envió en un intento anterior; vuelva a cargar",
    },
    "conflict.reconciliation_changed": {
        "en": "reconciliation changed meanwhile; reload",
        "es": "la conciliación cambió mientras tanto; vuelva a cargar",
    },
    "conflict.resolution_status": {
        "en": "resolution is {status}",
        "es": "la resolución está en estado {status}",
    },
    # A failure recorded earlier (e.g. a reconciliation's error column), shown
    # as it was stored.
    "conflict.recorded": {"en": "{error}", "es": "{error}"},
    "conflict.orphan_payout_unattributed": {
        "en": "this orphan payout belongs to no attribution in progress; reload",
        "es": "este pago de huérfano no pertenece a ninguna asignación en curso; "
        "vuelva a cargar",
    },
    "conflict.attribution_changed": {
        "en": "the attribution changed meanwhile; reload",
        "es": "la asignación cambió mientras tanto; vuelva a cargar",
    },
    "conflict.not_before_upgrade": {
        "en": "settlement is {status}; only a settlement paid before the upgrade "
        "line can be processed or dismissed here",
        "es": "la liquidación está en estado {status}; aquí solo se puede procesar "
        "o descartar una liquidación pagada antes de la línea de actualización",
    },
    # Where an orphan may go (orphan_resolution.py); the API answers 400.
    "orphan.wallet_required": {
        "en": "a valid wallet_id is required",
        "es": "se requiere un wallet_id válido",
    },
    "orphan.already_in_source": {
        "en": "the orphan is already in the source wallet; to keep it there, "
        "resolve it as operator_funds",
        "es": "el huérfano ya está en la billetera de origen; para dejarlo ahí, "
        "resuélvalo como operator_funds",
    },
    "orphan.client_required": {
        "en": "a valid client_id is required",
        "es": "se requiere un client_id válido",
    },
    "orphan.client_inactive": {
        "en": "client {username} is {status!r}; activate the client before "
        "attributing an orphan to them",
        "es": "el cliente {username} está en estado {status!r}; active al cliente "
        "antes de asignarle un huérfano",
    },
    "orphan.client_wallet_gone": {
        "en": "client {username}'s wallet no longer exists; give the client a new "
        "wallet first",
        "es": "la billetera del cliente {username} ya no existe; primero asígnele "
        "una billetera nueva",
    },
    # Client statements (statements.py, statements_render.py).
    "statement.date_format": {
        "en": "'{name}' must be a date as YYYY-MM-DD.",
        "es": "'{name}' debe ser una fecha con el formato AAAA-MM-DD.",
    },
    "statement.not_real_date": {
        "en": "'{name}' is not a real date: {value}.",
        "es": "'{name}' no es una fecha válida: {value}.",
    },
    "statement.period_format": {
        "en": "'period' must be a month (YYYY-MM, e.g. 2026-11) or a year (YYYY).",
        "es": "'period' debe ser un mes (AAAA-MM, p. ej. 2026-11) o un año (AAAA).",
    },
    "statement.dates_range": {
        "en": "Dates must be between {earliest} and {latest}.",
        "es": "Las fechas deben estar entre {earliest} y {latest}.",
    },
    "statement.no_month": {
        "en": "'period' has no month {month}.",
        "es": "'period' no tiene un mes {month}.",
    },
    "statement.period_or_range": {
        "en": "Give either 'period' or 'from'/'to', not both.",
        "es": "Indique 'period' o bien 'from'/'to', no ambos.",
    },
    "statement.to_needs_from": {
        "en": "'to' needs 'from' (YYYY-MM-DD).",
        "es": "'to' necesita 'from' (AAAA-MM-DD).",
    },
    "statement.from_after_to": {
        "en": "'from' ({start}) is after 'to' ({end}).",
        "es": "'from' ({start}) es posterior a 'to' ({end}).",
    },
    "statement.too_long": {
        "en": "A statement covers at most {maximum} days; this one asks for {days}.",
        "es": "Un estado de cuenta cubre como máximo {maximum} días; este pide "
        "{days}.",
    },
    "statement.bad_choice": {
        "en": "'{name}' must be one of {choices} (not {given}).",
        "es": "'{name}' debe ser uno de {choices} (no {given}).",
    },
    "statement.pdf_missing": {
        "en": "PDF statements need the Python package fpdf2 (version 2.7 or newer), "
        "which LNbits does not install; add it to LNbits' environment with: "
        "pip install fpdf2 (run with LNbits' own Python, e.g. `uv pip install "
        "fpdf2` in its folder), then ask again (restart LNbits if the answer "
        "stays the same). CSV statements (format=csv) work without it.",
        "es": "Los estados de cuenta en PDF necesitan el paquete de Python fpdf2 "
        "(versión 2.7 o más reciente), que LNbits no instala; agréguelo al entorno "
        "de LNbits con: pip install fpdf2 (ejecútelo con el Python de LNbits, "
        "p. ej. `uv pip install fpdf2` en su carpeta) y vuelva a pedirlo (reinicie "
        "LNbits si la respuesta no cambia). Los estados de cuenta en CSV "
        "(format=csv) funcionan sin él.",
    },
    "statement.pdf_old_fpdf": {
        "en": "{missing} Found fpdf {version} instead: pip uninstall fpdf, then "
        "pip install fpdf2.",
        "es": "{missing} En su lugar se encontró fpdf {version}: pip uninstall "
        "fpdf, luego pip install fpdf2.",
    },
}

# Why a settlement waits, is flagged or failed; its history (transaction
# processor, upgrade line, orphan resolution).
_SETTLEMENTS: dict[str, dict[str, str]] = {
    "transfer.target_is_share_of_source": {
        "en": "wallet {wallet} is a share of wallet {source}, a source wallet; "
        "it cannot receive this",
        "es": "la billetera {wallet} es una billetera compartida de {source}, "
        "una billetera de origen; no puede recibir este pago",
    },
    "payout.client_wallet_is_source": {
        "en": "wallet {wallet} of client {client} is a source wallet (ATM "
        "settlements arrive in it); give the client a wallet of its own and "
        "retry, or cancel the payout",
        "es": "la billetera {wallet} del cliente {client} es una billetera de "
        "origen (ahí llegan las liquidaciones del cajero); asígnele una "
        "billetera propia y reintente, o cancele el pago",
    },
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
    "settlement.machine_claim_other": {
        "en": "paid into the source wallet only machine {wallet_machine} uses, "
        "but the cash-out data names machine {named_machine}; accept it to pay "
        "the commission to the partners of {wallet_machine}, or enter the "
        "cash-out data by hand with the device id of the machine it belongs to",
        "es": "pagada en la billetera de origen que solo usa el cajero "
        "{wallet_machine}, pero los datos del retiro nombran el cajero "
        "{named_machine}; acéptela para pagar la comisión a los socios de "
        "{wallet_machine}, o ingrese a mano los datos del retiro con el id del "
        "dispositivo del cajero al que pertenece",
    },
    "settlement.machine_claim_unknown": {
        "en": "paid into the source wallet only machine {wallet_machine} uses, "
        "but the cash-out data names {named_machine}, a device not listed as a "
        "machine; accept it to pay the commission to the partners of "
        "{wallet_machine}, or enter the cash-out data by hand with the device "
        "id of the machine it belongs to",
        "es": "pagada en la billetera de origen que solo usa el cajero "
        "{wallet_machine}, pero los datos del retiro nombran {named_machine}, "
        "un dispositivo que no está en la lista de cajeros; acéptela para "
        "pagar la comisión a los socios de {wallet_machine}, o ingrese a mano "
        "los datos del retiro con el id del dispositivo del cajero al que "
        "pertenece",
    },
    "settlement.flag_reasons": {
        "en": "{machine}; also: {other}",
        "es": "{machine}; además: {other}",
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
    "lock.session_changes": {
        "en": "PostgreSQL is reached through a pooler in transaction mode: the "
        "lock that keeps two LNbits processes from paying at once does not hold "
        "(use session mode, or one LNbits process)",
        "es": "Se accede a PostgreSQL a través de un pooler en modo transacción: "
        "el bloqueo que impide que dos procesos de LNbits paguen a la vez no se "
        "mantiene (use el modo sesión, o un solo proceso de LNbits)",
    },
    "lock.idle_session_timeout": {
        "en": "PostgreSQL ends idle sessions after {timeout} (idle_session_timeout):"
        " the lock that keeps two LNbits processes from paying at once can be lost"
        " (set it to 0 for LNbits' database user, or run one LNbits process)",
        "es": "PostgreSQL cierra las sesiones inactivas después de {timeout} "
        "(idle_session_timeout): el bloqueo que impide que dos procesos de LNbits "
        "paguen a la vez puede perderse (póngalo en 0 para el usuario de base de "
        "datos de LNbits, o use un solo proceso de LNbits)",
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
    "transfer.not_paid_internally": {
        "en": "LNbits did not pay the invoice internally (status {status}); retry",
        "es": "LNbits no pagó la factura internamente (estado {status}); reintente",
    },
    "transfer.contended": {
        "en": "another run holds this payout; retry",
        "es": "otra ejecución tiene este pago; reintente",
    },
    "payout.balance_does_not_cover": {
        "en": "held: the client's balance ({balance} {currency}: confirmed "
        "deposits less confirmed payouts) no longer covers this payout of "
        "{fiat} {currency} (a deposit was cancelled or changed after the "
        "split); it is paid by a retry once the balance covers it, or cancel "
        "it into the orphan",
        "es": "retenido: el saldo del cliente ({balance} {currency}: depósitos "
        "confirmados menos pagos confirmados) ya no cubre este pago de {fiat} "
        "{currency} (un depósito se canceló o cambió después del reparto); se "
        "paga al reintentar cuando el saldo lo cubra, o cancélelo al huérfano",
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
# A LamassuError keeps English as its str() (lookups store it); the
# connection test renders its message in the reader's language.
_LAMASSU: dict[str, dict[str, str]] = {
    "lamassu.step.ssh_tunnel": {"en": "SSH tunnel", "es": "Túnel SSH"},
    "lamassu.step.database_login": {
        "en": "Database login",
        "es": "Inicio de sesión en la base de datos",
    },
    "lamassu.step.table_access": {"en": "Table access", "es": "Acceso a la tabla"},
    "lamassu.step.row_count": {"en": "Row count", "es": "Conteo de filas"},
    "lamassu.step.server_time": {"en": "Server time", "es": "Hora del servidor"},
    "lamassu.tunnel_ok": {
        "en": "connected to {ssh_host}:{ssh_port} as {ssh_user}, forwarding to "
        "{host}:{port}",
        "es": "conectado a {ssh_host}:{ssh_port} como {ssh_user}, reenviando a "
        "{host}:{port}",
    },
    "lamassu.login_ok": {
        "en": "logged in to '{database}' as {user} (read only)",
        "es": "sesión iniciada en '{database}' como {user} (solo lectura)",
    },
    "lamassu.table_ok": {"en": "{table} readable", "es": "{table} se puede leer"},
    "lamassu.row_count_ok": {
        "en": "{count} cash-out transactions",
        "es": "{count} transacciones de retiro",
    },
    "lamassu.server_time_ok": {
        "en": "{now} (time zone {zone}), {drift} s from this server",
        "es": "{now} (zona horaria {zone}), {drift} s de diferencia con este "
        "servidor",
    },
    "lamassu.all_passed": {
        "en": "Connected: every step passed.",
        "es": "Conectado: todos los pasos se completaron.",
    },
    "lamassu.no_steps": {"en": "No steps ran.", "es": "No se ejecutó ningún paso."},
    "lamassu.asyncssh_missing": {
        "en": "the SSH tunnel needs the Python package asyncssh, which LNbits does "
        "not install; add it to LNbits' environment with: pip install "
        "'asyncssh>=2.14,<3' (run with LNbits' own Python, e.g. `uv pip install "
        "asyncssh` in its folder), then restart LNbits",
        "es": "el túnel SSH necesita el paquete de Python asyncssh, que LNbits no "
        "instala; agréguelo al entorno de LNbits con: pip install "
        "'asyncssh>=2.14,<3' (ejecútelo con el Python de LNbits, p. ej. `uv pip "
        "install asyncssh` en su carpeta) y luego reinicie LNbits",
    },
    "lamassu.ssh_needs_host": {
        "en": "the SSH tunnel needs a host and a username",
        "es": "el túnel SSH necesita un host y un nombre de usuario",
    },
    "lamassu.ssh_key_unreadable": {
        "en": "the SSH private key could not be read (is it complete?)",
        "es": "no se pudo leer la clave privada SSH (¿está completa?)",
    },
    "lamassu.ssh_host_key_unknown": {
        "en": "the SSH server {where} did not present a key from the known hosts",
        "es": "el servidor SSH {where} no presentó una clave de los hosts conocidos",
    },
    "lamassu.ssh_login_refused": {
        "en": "the SSH server {where} refused the login for '{user}': wrong "
        "username, password or key",
        "es": "el servidor SSH {where} rechazó el inicio de sesión de '{user}': "
        "usuario, contraseña o clave incorrectos",
    },
    "lamassu.ssh_forward_refused": {
        "en": "the SSH server {where} refused to forward to {target}",
        "es": "el servidor SSH {where} se negó a reenviar a {target}",
    },
    "lamassu.ssh_timeout": {
        "en": "the SSH server {where} did not answer in time",
        "es": "el servidor SSH {where} no respondió a tiempo",
    },
    "lamassu.ssh_unreachable": {
        "en": "cannot reach the SSH server {where}: {error}",
        "es": "no se puede conectar con el servidor SSH {where}: {error}",
    },
    "lamassu.ssh_failed": {
        "en": "SSH to {where} failed: {error}",
        "es": "falló la conexión SSH a {where}: {error}",
    },
    "lamassu.db_login_refused": {
        "en": "the database refused user '{user}': wrong user or password",
        "es": "la base de datos rechazó al usuario '{user}': usuario o contraseña "
        "incorrectos",
    },
    "lamassu.db_missing": {
        "en": "the database '{database}' does not exist",
        "es": "la base de datos '{database}' no existe",
    },
    "lamassu.table_missing": {
        "en": "table {table} not found: is '{database}' the Lamassu database?",
        "es": "no se encontró la tabla {table}: ¿es '{database}' la base de datos "
        "de Lamassu?",
    },
    "lamassu.table_forbidden": {
        "en": "user '{user}' may not read {table}: grant it SELECT",
        "es": "el usuario '{user}' no puede leer {table}: otórguele SELECT",
    },
    "lamassu.columns_missing": {
        "en": "{table} lacks {columns}: an unsupported Lamassu version",
        "es": "a {table} le falta {columns}: una versión de Lamassu no compatible",
    },
    "lamassu.cash_units_forbidden": {
        "en": "user '{user}' may not read devices and user_config (the machines' "
        "cassettes): grant it SELECT",
        "es": "el usuario '{user}' no puede leer devices ni user_config (los "
        "casetes de los cajeros): otórguele SELECT",
    },
    "lamassu.db_timeout": {
        "en": "the database at {where} did not answer in time",
        "es": "la base de datos en {where} no respondió a tiempo",
    },
    "lamassu.db_unreachable": {
        "en": "cannot reach the database at {where}: {error}",
        "es": "no se puede conectar con la base de datos en {where}: {error}",
    },
    "lamassu.db_answered": {
        "en": "the database answered: {error}",
        "es": "la base de datos respondió: {error}",
    },
    "lamassu.db_failed": {
        "en": "database connection failed: {error}",
        "es": "falló la conexión a la base de datos: {error}",
    },
    "lamassu.not_connected": {"en": "not connected", "es": "sin conexión"},
}

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
    "alert.title.commission_failed": {
        "en": "Commission part failed",
        "es": "Parte de comisión fallida",
    },
    "alert.title.orphan_failed": {
        "en": "Orphan resolution failed",
        "es": "Resolución de huérfano fallida",
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
    "alert.commission_failed.message": {
        "en": "Commission part of {sats} sats ({percent} %) to partner {partner} "
        "(wallet {wallet}), settlement {settlement}, device {device}, failed: "
        "the partner is not being paid. It is retried every pass; fix the "
        "wallet or change the commission partners. Error: {error}",
        "es": "La parte de comisión de {sats} sats ({percent} %) para el socio "
        "{partner} (billetera {wallet}), liquidación {settlement}, dispositivo "
        "{device}, falló: el socio no está recibiendo su pago. Se reintenta en "
        "cada pasada; corrija la billetera o cambie los socios de comisión. "
        "Error: {error}",
    },
    "alert.orphan_failed.send": {
        "en": "{what}: sending it to the chosen wallet failed. The orphan is "
        "open again; resolve it in Reconciliation. Error: {error}",
        "es": "{what}: el envío a la billetera elegida falló. El huérfano está "
        "abierto de nuevo; resuélvalo en Conciliación. Error: {error}",
    },
    "alert.orphan_failed.attribution": {
        "en": "{what}: the payment to the client it was attributed to fails. "
        "It is retried every pass; fix it or give up on the attribution (cancel "
        "its payout). Error: {error}",
        "es": "{what}: el pago al cliente al que se atribuyó falla. Se reintenta "
        "en cada pasada; corríjalo o abandone la atribución (cancele su pago). "
        "Error: {error}",
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
