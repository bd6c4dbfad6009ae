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
