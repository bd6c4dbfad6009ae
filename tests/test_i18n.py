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
# Texts with a singular and a plural form ('one | many', index.js tn()).
PLURAL_KEYS = {
    "satmachineadmin.overview." + key
    for key in (
        "distributed_detail",
        "settlements_processed",
        "open_orphans_detail",
        "flagged_for_you",
        "to_retry",
        "poll_done",
    )
}
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
        # vue-i18n reads @ $ | as syntax; | only where a text has a singular
        # and a plural form (index.js tn()), two forms in each language.
        for lang_text in (text, es[key]):
            assert not re.search(r"[@$]", lang_text), (key, lang_text)
            if key in PLURAL_KEYS:
                assert lang_text.count(" | ") == 1, (key, lang_text)
            else:
                assert "|" not in lang_text, (key, lang_text)


def test_plural_texts_are_used_with_a_count():
    component = (STATIC / "index.js").read_text(encoding="utf-8")
    counted = {
        "satmachineadmin." + key for key in re.findall(r"\btn\('([\w.]+)'", component)
    }
    assert counted == PLURAL_KEYS


def test_every_key_used_exists():
    en = tables()["en"]
    template = (STATIC / "index.vue").read_text(encoding="utf-8")
    component = (STATIC / "index.js").read_text(encoding="utf-8")
    used = set(re.findall(r"\$t\('(satmachineadmin\.[\w.]+)'", template))
    used |= {
        "satmachineadmin." + key
        for key in re.findall(r"\btn?\('([\w.]+)'", component)
        if not key.endswith(".")
    }
    # Table headers: column('name', 'labelKey', ...).
    headers = re.findall(r"\bcolumn\('\w+', '([\w.]+)'", component)
    assert len(headers) > 50, headers
    used |= {"satmachineadmin." + key for key in headers}
    assert used, "no keys found"
    assert sorted(used - set(en)) == []


# Audit actions the server writes from a value rather than a literal: the
# code's shape and every value it can take (models.ResolutionAction,
# models.DepositStatus).
DYNAMIC_ACTIONS = {
    "f'resolve:{action.value}'": [
        "resolve:operator_funds",
        "resolve:send_to_wallet",
        "resolve:attribute_to_client",
    ],
    "deposit.status": ["confirmed", "cancelled", "pending"],
}


def audit_actions() -> set[str]:
    """Every action code an `add_audit(entity, id, action, ...)` call in the
    extension's modules writes."""
    import ast

    actions: set[str] = set()
    for path in sorted(STATIC.parent.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None))
                == "add_audit"
                and len(node.args) >= 3
            ):
                continue
            action = node.args[2]
            if isinstance(action, ast.Constant) and isinstance(action.value, str):
                actions.add(action.value)
                continue
            shape = ast.unparse(action)
            assert shape in DYNAMIC_ACTIONS, f"{path.name}: add_audit action {shape}"
            actions.update(DYNAMIC_ACTIONS[shape])
    return actions


def test_every_history_action_is_in_words():
    """The history dialog shows each action the server writes from the
    `history.actions` table (the key: the code with ':' as '_', see
    historyAction in index.js)."""
    en = tables()["en"]
    actions = audit_actions()
    assert {"resolve:operator_funds", "dismissed", "cancelled"} <= actions
    keys = {
        "satmachineadmin.history.actions." + re.sub(r"[^a-z0-9_]", "_", a)
        for a in actions
    }
    assert sorted(keys - set(en)) == []
    # ... and nothing in the table that no code writes any more.
    table = {k for k in en if k.startswith("satmachineadmin.history.actions.")}
    assert sorted(table - keys) == []
