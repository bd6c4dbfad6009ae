"""Client statements as files: CSV (always) and PDF (with the optional
package fpdf2), in English or Spanish, and a zip of several.

The figures come from statements.py; this module only lays them out. Amounts
are written as people read them, es-GT style in both languages (the
deployment's): `Q1,234.56`, sats as `256,200`, dates YYYY-MM-DD, times UTC.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import datetime
from decimal import Decimal
from typing import Any

from .messages import Message, current_language
from .statements import ClientStatement, CurrencyStatement, utc
from .views_api import csv_cell

# A currency's symbol where the language has a usual one; any other currency
# is written with its code ("MXN 1,234.56").
SYMBOLS = {
    "en": {"GTQ": "Q", "USD": "$"},
    "es": {"GTQ": "Q", "USD": "US$"},
}

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "DCA account statement",
        "client": "Client",
        "client_id": "Client ID",
        "period": "Period",
        "to": "to",
        "generated": "Generated",
        "times_utc": "Dates and times are UTC.",
        "currency": "Currency",
        "opening": "Balance at start of {day}",
        "closing": "Balance at end of {day}",
        "deposits": "Deposits",
        "purchases": "Bitcoin purchases",
        "date": "Date",
        "amount": "Amount",
        "sats": "Sats",
        "price": "Price per BTC",
        "machine": "Machine",
        "total_deposited": "Total deposited",
        "total_spent": "Total spent",
        "total_sats": "Total sats",
        "average_cost": "Average cost per BTC",
        "none": "None in this period.",
        "no_activity": "No deposits, purchases or balance in this period.",
        "balance_note": (
            "Balance: confirmed deposits minus the fiat of confirmed purchases."
        ),
        "page": "Page {n}",
        "no_cost": "n/a",
    },
    "es": {
        "title": "Estado de cuenta DCA",
        "client": "Cliente",
        "client_id": "ID de cliente",
        "period": "Periodo",
        "to": "al",
        "generated": "Generado",
        "times_utc": "Fechas y horas en UTC.",
        "currency": "Moneda",
        "opening": "Saldo al inicio del {day}",
        "closing": "Saldo al cierre del {day}",
        "deposits": "Depósitos",
        "purchases": "Compras de bitcoin",
        "date": "Fecha",
        "amount": "Monto",
        "sats": "Sats",
        "price": "Precio por BTC",
        "machine": "Cajero",
        "total_deposited": "Total depositado",
        "total_spent": "Total invertido",
        "total_sats": "Total de sats",
        "average_cost": "Costo promedio por BTC",
        "none": "Ninguno en este periodo.",
        "no_activity": "Sin depósitos, compras ni saldo en este periodo.",
        "balance_note": (
            "Saldo: depósitos confirmados menos el monto de las compras " "confirmadas."
        ),
        "page": "Página {n}",
        "no_cost": "n/d",
    },
}


def money(amount: Decimal, currency: str, lang: str) -> str:
    """`Q1,234.56`, `-Q5.00`, `MXN 1,234.56`."""
    sign = "-" if amount < 0 else ""
    body = f"{abs(amount):,.2f}"
    symbol = SYMBOLS.get(lang, {}).get(currency)
    return f"{sign}{symbol}{body}" if symbol else f"{sign}{currency} {body}"


def sats(value: int) -> str:
    return f"{value:,}"


def day(moment: datetime) -> str:
    return utc(moment).strftime("%Y-%m-%d")


def minute(moment: datetime) -> str:
    return utc(moment).strftime("%Y-%m-%d %H:%M")


def file_name(statement: ClientStatement, extension: str, with_id: bool) -> str:
    """An ASCII file name: the client's name (or id), the id too when several
    clients' files share a folder, and the period."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", statement.client_name or "")
    slug = slug.strip("-")[:40].strip("-")
    client_id = re.sub(r"[^A-Za-z0-9_-]+", "", statement.client_id)[:64] or "client"
    parts = ["statement", slug or client_id]
    if with_id and slug:
        parts.append(client_id)
    parts.append(statement.period.label)
    return "_".join(parts) + "." + extension


# ----------------------------------------------------------------------- rows


def _section_rows(entry: CurrencyStatement, statement: ClientStatement, lang: str):
    """The rows of one currency, shared by the CSV and the PDF."""
    t = LABELS[lang]
    cur = entry.currency
    period = statement.period
    yield "heading", [f"{t['currency']}: {cur}"]
    yield "figure", [
        t["opening"].format(day=period.start.isoformat()),
        money(entry.opening_balance, cur, lang),
    ]
    yield "subheading", [t["deposits"]]
    if entry.deposits:
        yield "header", [t["date"], t["amount"]]
        for deposit in entry.deposits:
            yield "row", [day(deposit.at), money(deposit.amount, cur, lang)]
    else:
        yield "note", [t["none"]]
    yield "figure", [t["total_deposited"], money(entry.total_deposited, cur, lang)]
    yield "subheading", [t["purchases"]]
    if entry.purchases:
        yield "header", [t["date"], t["sats"], t["amount"], t["price"], t["machine"]]
        for line in entry.purchases:
            yield "row", [
                minute(line.at),
                sats(line.sats),
                money(line.fiat, cur, lang),
                money(line.price, cur, lang) if line.price is not None else "",
                line.machine or "",
            ]
    else:
        yield "note", [t["none"]]
    yield "figure", [t["total_sats"], sats(entry.total_sats)]
    yield "figure", [t["total_spent"], money(entry.total_fiat, cur, lang)]
    yield "figure", [
        t["average_cost"],
        (
            money(entry.average_cost, cur, lang)
            if entry.average_cost is not None
            else t["no_cost"]
        ),
    ]
    yield "figure", [
        t["closing"].format(day=period.end.isoformat()),
        money(entry.closing_balance, cur, lang),
    ]


def _head_rows(statement: ClientStatement, lang: str):
    t = LABELS[lang]
    yield "title", [t["title"]]
    yield "figure", [t["client"], statement.client_name or ""]
    yield "figure", [t["client_id"], statement.client_id]
    period = statement.period
    yield "figure", [
        t["period"],
        f"{period.start.isoformat()} {t['to']} {period.end.isoformat()}",
    ]
    yield "figure", [t["generated"], minute(statement.generated_at) + " UTC"]
    yield "note", [t["times_utc"]]
    yield "note", [t["balance_note"]]


def statement_rows(statement: ClientStatement, lang: str):
    yield from _head_rows(statement, lang)
    if not statement.currencies:
        yield "note", [LABELS[lang]["no_activity"]]
    for entry in statement.currencies:
        yield "blank", []
        yield from _section_rows(entry, statement, lang)


# ------------------------------------------------------------------------ CSV


def render_csv(statement: ClientStatement, lang: str) -> bytes:
    """The statement as CSV (UTF-8 with a byte-order mark, so spreadsheets
    read the accents). Every cell goes through csv_cell: a client's name that
    starts with `=` is never run as a formula."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for _kind, cells in statement_rows(statement, lang):
        writer.writerow([csv_cell(cell) for cell in cells])
    return buffer.getvalue().encode("utf-8-sig")


# ------------------------------------------------------------------------ PDF


class PdfUnavailableError(RuntimeError):
    """The optional package for PDFs is not installed here; its text (naming
    the package and the command) in the request's language."""

    def __init__(self, message: Message) -> None:
        self.message = message
        super().__init__(message.render(current_language()))


FPDF_MISSING = Message("statement.pdf_missing")


def require_fpdf() -> Any:
    """The fpdf2 module, or PdfUnavailableError naming the package and the command
    that adds it. Imported only here, when a PDF is asked for: the extension
    must load on a stock LNbits."""
    try:
        import fpdf
    except ImportError:
        raise PdfUnavailableError(FPDF_MISSING) from None
    version = str(getattr(fpdf, "FPDF_VERSION", "0"))
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        major, minor = 0, 0
    if (major, minor) < (2, 7):
        # The abandoned PyFPDF (package `fpdf` 1.x) uses the same module name.
        raise PdfUnavailableError(
            Message(
                "statement.pdf_old_fpdf", {"missing": FPDF_MISSING, "version": version}
            )
        )
    return fpdf


def _latin1(text: str) -> str:
    """The PDF's built-in fonts cover Latin-1 (Spanish included); anything
    else a name may hold becomes '?' rather than an error."""
    return text.encode("latin-1", "replace").decode("latin-1")


# Purchase table columns (mm, A4 portrait with 10 mm margins: 190 mm).
_WIDTHS = {2: (34.0, 36.0), 5: (34.0, 28.0, 34.0, 38.0, 56.0)}


def render_pdf(statement: ClientStatement, lang: str) -> bytes:
    fpdf = require_fpdf()
    t = LABELS[lang]

    class Document(fpdf.FPDF):  # type: ignore[name-defined,misc]
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font("Helvetica", "", 8)
            self.cell(0, 6, _latin1(t["page"].format(n=self.page_no())), align="C")

    pdf = Document(orientation="P", unit="mm", format="A4")
    pdf.set_margins(10, 10, 10)
    pdf.c_margin = 1.5  # cell padding: a price never touches the machine id
    pdf.set_auto_page_break(True, margin=15)
    pdf.set_title(_latin1(f"{t['title']} {statement.period.label}"))
    pdf.set_creator("satmachineadmin")
    pdf.add_page()

    def line(text: str, style: str = "", size: float = 10, height: float = 6):
        pdf.set_font("Helvetica", style, size)
        pdf.multi_cell(0, height, _latin1(text), new_x="LMARGIN", new_y="NEXT")

    def fit(text: str, width: float) -> str:
        text = _latin1(text)
        if pdf.get_string_width(text) <= width - 2:
            return text
        while text and pdf.get_string_width(text + "...") > width - 2:
            text = text[:-1]
        return text + "..."

    def table_row(cells: list[str], style: str = "") -> None:
        widths = _WIDTHS.get(len(cells), (190.0 / len(cells),) * len(cells))
        pdf.set_font("Helvetica", style, 9)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            align = "L" if i == 0 or (len(cells) == 5 and i == 4) else "R"
            pdf.cell(width, 6, fit(cell, width), border="B", align=align)
        pdf.ln(6)

    for kind, cells in statement_rows(statement, lang):
        if kind == "title":
            line(cells[0], "B", 16, 10)
        elif kind == "heading":
            line(cells[0], "B", 13, 9)
        elif kind == "subheading":
            pdf.ln(1)
            line(cells[0], "B", 11, 7)
        elif kind == "figure":
            pdf.set_font("Helvetica", "B", 10)
            pdf.cell(70, 6, fit(cells[0], 70))
            pdf.set_font("Helvetica", "", 10)
            pdf.multi_cell(0, 6, _latin1(cells[1]), new_x="LMARGIN", new_y="NEXT")
        elif kind == "header":
            table_row(cells, "B")
        elif kind == "row":
            table_row(cells)
        elif kind == "note":
            line(cells[0], "I", 9, 5)
        elif kind == "blank":
            pdf.ln(3)
    return bytes(pdf.output())


# ------------------------------------------------------------------------ zip


def render(statement: ClientStatement, fmt: str, lang: str) -> bytes:
    return render_pdf(statement, lang) if fmt == "pdf" else render_csv(statement, lang)


def render_zip(statements: list[ClientStatement], fmt: str, lang: str) -> bytes:
    """One file per client."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        names: set[str] = set()
        for statement in statements:
            name = file_name(statement, fmt, with_id=True)
            stem, n = name, 1
            while name in names:  # ids that differ only in odd characters
                n += 1
                name = stem.replace(f".{fmt}", f"_{n}.{fmt}")
            names.add(name)
            archive.writestr(name, render(statement, fmt, lang))
    return buffer.getvalue()
