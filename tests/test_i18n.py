"""The dashboard's string tables (static/i18n/<lang>.js) cover each other.

Every string the dashboard writes is a key under `satmachineadmin.` in en.js;
es.js must have exactly the same keys, no empty text, and a Spanish text for
each (equal to the English one only for the words in SAME_IN_BOTH). The page
template and the component only use keys that exist. In the browser,
test_browser.py checks that the Spanish page shows none of the English texts.
"""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "static"
LANGUAGES = ("en", "es")
# Words written the same in English and Spanish: units, codes, names.
SAME_IN_BOTH = {"CSV", "Sats", "OK", "API", "GTQ", "USD", "SSH", "Lamassu"}


def load_messages(lang: str) -> dict:
    """The object given to mergeLocaleMessage in static/i18n/<lang>.js (a
    plain object literal: keys, quoted strings, nesting)."""
    text = (STATIC / "i18n" / f"{lang}.js").read_text(encoding="utf-8")
    call = re.search(r"mergeLocaleMessage\(\s*'([a-z]+)'\s*,", text)
    assert call, f"{lang}.js does not call mergeLocaleMessage"
    assert call.group(1) == lang, f"{lang}.js merges into {call.group(1)!r}"
    tokens = re.findall(
        r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*|[{}:,]""",
        text[call.end() :],
    )
    position = 0

    def value():
        nonlocal position
        token = tokens[position]
        position += 1
        if token == "{":
            result = {}
            while tokens[position] != "}":
                key = tokens[position].strip("'\"")
                assert tokens[position + 1] == ":", tokens[position : position + 3]
                position += 2
                assert key not in result, f"{lang}.js: duplicate key {key}"
                result[key] = value()
                if tokens[position] == ",":
                    position += 1
            position += 1
            return result
        assert token[0] in "'\"", f"{lang}.js: unexpected {token!r}"
        return re.sub(r"\\(.)", r"\1", token[1:-1])

    return value()


def flatten(messages: dict, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in messages.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def tables() -> dict[str, dict[str, str]]:
    return {lang: flatten(load_messages(lang)) for lang in LANGUAGES}


def test_english_and_spanish_have_the_same_keys():
    en, es = tables()["en"], tables()["es"]
    assert all(key.startswith("satmachineadmin.") for key in en)
    assert sorted(set(en) - set(es)) == [], "missing in es.js"
    assert sorted(set(es) - set(en)) == [], "missing in en.js"


def test_no_empty_text_and_spanish_is_spanish():
    en, es = tables()["en"], tables()["es"]
    for lang, table in (("en", en), ("es", es)):
        assert not [k for k, v in table.items() if not v.strip()], f"empty in {lang}"
    untranslated = [
        key for key, text in es.items() if text == en[key] and text not in SAME_IN_BOTH
    ]
    assert untranslated == []


def test_placeholders_match():
    en, es = tables()["en"], tables()["es"]
    for key, text in en.items():
        assert set(re.findall(r"\{(\w+)\}", text)) == set(
            re.findall(r"\{(\w+)\}", es[key])
        ), key
        # vue-i18n reads @ $ | as syntax.
        for lang_text in (text, es[key]):
            assert not re.search(r"[@$|]", lang_text), (key, lang_text)


def test_every_key_used_exists():
    en = tables()["en"]
    template = (STATIC / "index.vue").read_text(encoding="utf-8")
    component = (STATIC / "index.js").read_text(encoding="utf-8")
    used = set(re.findall(r"\$t\('(satmachineadmin\.[\w.]+)'", template))
    used |= {
        "satmachineadmin." + key
        for key in re.findall(r"\bt\('([\w.]+)'", component)
        if not key.endswith(".")
    }
    assert used, "no keys found"
    assert sorted(used - set(en)) == []
