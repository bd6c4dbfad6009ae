"""The texts the server writes, in English and Spanish (messages.py): every
code in every language with the same placeholders, the request's language
read from Accept-Language, stored messages rendered again for the reader."""

from __future__ import annotations

import re
import string
import sys
from pathlib import Path

import pytest

# The pure module has no LNbits imports: load it straight from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from messages import (
    CATALOG,
    LANGUAGES,
    Message,
    MessageError,
    current_language,
    language_from_header,
    localized,
    set_language,
    text,
)

# Texts that are the same word in both languages.
SAME_IN_BOTH: set[str] = {
    # A failure recorded earlier (English, in its column), shown as it was.
    "conflict.recorded",
}


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


@pytest.mark.parametrize("code", sorted(CATALOG))
def test_every_code_in_every_language_with_the_same_placeholders(code):
    templates = CATALOG[code]
    assert set(templates) == set(LANGUAGES), code
    for lang in LANGUAGES:
        assert templates[lang].strip(), (code, lang)
        assert templates[lang] == templates[lang].strip(), (code, lang)
    assert _fields(templates["en"]) == _fields(templates["es"]), code
    if code not in SAME_IN_BOTH:
        assert templates["en"] != templates["es"], f"{code} is not translated"


def test_codes_are_dotted_snake_case():
    for code in CATALOG:
        assert re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)*", code), code


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, "en"),
        ("", "en"),
        ("es", "es"),
        ("es-GT", "es"),
        ("ES-gt,en;q=0.5", "es"),
        ("fr-FR,es;q=0.9,en;q=0.8", "es"),
        ("en-US,en;q=0.9,es;q=0.8", "en"),
        ("de,fr", "en"),
        ("es;q=0,en;q=0.1", "en"),
        ("es;q=abc", "en"),
        ("*", "en"),
        (";;;,,,q=", "en"),
        ("es;q=0.2,en;q=0.9", "en"),
        ("x" * 10_000, "en"),
    ],
)
def test_language_from_the_accept_language_header(header, expected):
    assert language_from_header(header) == expected


def test_nested_messages_render_in_one_language_and_survive_json():
    set_language("en")
    message = Message(
        "not_found.client",
        {"unused": [Message("not_found.deposit"), Message("not_found.wallet")]},
    )
    again = Message.from_json(message.to_json())
    assert again == message
    assert again.render("es") == "Cliente no encontrado."
    assert again.render("en") == "Client not found."


@pytest.mark.parametrize("raw", [None, "", "{", "[]", '"x"', '{"code": 1}', "null"])
def test_unreadable_stored_messages_fall_back_to_the_english_column(raw):
    assert localized("as it was", raw) == "as it was"


def test_a_code_unknown_to_this_version_renders_as_its_code():
    assert Message("from.a.newer.version").render("es") == "from.a.newer.version"


def test_message_errors_write_in_the_current_language():
    set_language("es")
    try:
        assert current_language() == "es"
        assert str(MessageError("not_found.machine")) == "Cajero no encontrado."
        assert text("not_found.machine") == "Cajero no encontrado."
        assert isinstance(MessageError("not_found.machine"), ValueError)
    finally:
        set_language("en")
    assert str(MessageError("not_found.machine")) == "Machine not found."
    set_language("klingon")
    assert current_language() == "en"


@pytest.mark.asyncio(loop_scope="session")
async def test_api_errors_follow_the_request_language(env):
    missing = "/clients/no-such-client"
    english = await env.api("GET", missing)
    assert english.status_code == 404
    assert english.json()["detail"] == "Client not found."
    headers = {**env.auth, "Accept-Language": "es-GT,es;q=0.9"}
    spanish = await env.api("GET", missing, headers=headers)
    assert spanish.status_code == 404
    assert spanish.json()["detail"] == "Cliente no encontrado."
    # The language is the request's own: the next request without it is English.
    assert (await env.api("GET", missing)).json()["detail"] == "Client not found."
