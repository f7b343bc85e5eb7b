"""The committed currency table is exactly what the generator makes from the pinned ISO 4217 XML."""

from __future__ import annotations

import importlib.resources
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from clearhouse import currencies
from clearhouse.currencies import CURRENCIES, ISO4217_PUBLISHED

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATOR = REPO_ROOT / "tools" / "gen_currencies.py"
COMMITTED = REPO_ROOT / "src" / "clearhouse" / "currencies.py"


def _source_root() -> ET.Element:
    return ET.fromstring((importlib.resources.files("iso4217") / "table.xml").read_bytes())


def _source_entries() -> list[dict[str, str | None]]:
    def text(node: ET.Element, tag: str) -> str | None:
        child = node.find(tag)
        return None if child is None or child.text is None else child.text.strip()

    return [
        {tag: text(node, tag) for tag in ("Ccy", "CcyNbr", "CcyMnrUnts", "CcyNm")}
        for node in _source_root().iter("CcyNtry")
    ]


def _run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
    )


def test_committed_module_matches_fresh_generation(tmp_path: Path) -> None:
    out = tmp_path / "currencies.py"
    result = _run_generator("-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == COMMITTED.read_bytes(), (
        "src/clearhouse/currencies.py drifted; rerun python tools/gen_currencies.py"
    )


def test_header_names_generator_source_and_publication_date() -> None:
    header = COMMITTED.read_text(encoding="utf-8").splitlines()[:3]
    published = _source_root().get("Pblshd")
    assert published is not None
    assert "python tools/gen_currencies.py" in header[0]
    assert "GENERATED" in header[0]
    assert "iso4217/table.xml" in header[1]
    assert f'Pblshd="{published}"' in header[2]
    assert published == ISO4217_PUBLISHED


@pytest.mark.parametrize(
    ("code", "numeric", "exponent"),
    [
        ("CNY", "156", 2),
        ("JPY", "392", 0),
        ("KWD", "414", 3),
        ("USD", "840", 2),
        ("EUR", "978", 2),
        ("CLF", "990", 4),
        ("BHD", "048", 3),
        ("UYW", "927", 4),
    ],
)
def test_spot_checks_stated_by_source(code: str, numeric: str, exponent: int) -> None:
    assert CURRENCIES[code][:2] == (numeric, exponent)
    # The same facts, read straight from the XML rather than through the generator.
    stated = {(e["CcyNbr"], e["CcyMnrUnts"]) for e in _source_entries() if e["Ccy"] == code}
    assert stated == {(numeric, str(exponent))}


def test_table_agrees_with_every_source_entry() -> None:
    entries = _source_entries()
    holdable = {e["Ccy"] for e in entries if e["Ccy"] and e["CcyMnrUnts"] != "N.A."}
    assert set(CURRENCIES) == holdable
    for e in entries:
        code = e["Ccy"]
        if code in CURRENCIES:
            assert CURRENCIES[code] == (e["CcyNbr"], int(e["CcyMnrUnts"] or ""), e["CcyNm"])


@pytest.mark.parametrize("code", ["XAU", "XAG", "XDR", "XTS", "XXX", "XBA", "XUA", "XSU"])
def test_non_currencies_are_skipped(code: str) -> None:
    stated = {e["CcyMnrUnts"] for e in _source_entries() if e["Ccy"] == code}
    assert stated == {"N.A."}
    assert code not in CURRENCIES


def test_table_shape() -> None:
    codes = list(CURRENCIES)
    assert codes == sorted(codes)
    assert len(codes) > 150
    for code, (numeric, exponent, name) in CURRENCIES.items():
        assert len(code) == 3
        assert code.isascii()
        assert code.isalpha()
        assert code.isupper()
        assert len(numeric) == 3
        assert numeric.isdigit()
        assert 0 <= exponent <= 4
        assert name == name.strip()
        assert name
    numerics = [numeric for numeric, _, _ in CURRENCIES.values()]
    assert len(numerics) == len(set(numerics))
    # Non-ASCII names are escaped so the module stays ASCII, yet the data is unchanged.
    assert COMMITTED.read_bytes().isascii()
    assert CURRENCIES["TOP"][2] == "Pa\N{RIGHT SINGLE QUOTATION MARK}anga"
    assert currencies.__all__ == ["CURRENCIES", "ISO4217_PUBLISHED"]


_SMALL_XML = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<ISO_4217 Pblshd="2030-02-03">
  <CcyTbl>
    <CcyNtry><CtryNm>B</CtryNm><CcyNm>Euro</CcyNm><Ccy>EUR</Ccy>
      <CcyNbr>978</CcyNbr><CcyMnrUnts>2</CcyMnrUnts></CcyNtry>
    <CcyNtry><CtryNm>NOWHERE</CtryNm><CcyNm>No universal currency</CcyNm></CcyNtry>
    <CcyNtry><CtryNm>A</CtryNm><CcyNm>Euro</CcyNm><Ccy>EUR</Ccy>
      <CcyNbr>978</CcyNbr><CcyMnrUnts>2</CcyMnrUnts></CcyNtry>
    <CcyNtry><CtryNm>Z</CtryNm><CcyNm>Gold</CcyNm><Ccy>XAU</Ccy>
      <CcyNbr>959</CcyNbr><CcyMnrUnts>N.A.</CcyMnrUnts></CcyNtry>
    <CcyNtry><CtryNm>C</CtryNm><CcyNm>Bahraini Dinar </CcyNm><Ccy>BHD</Ccy>
      <CcyNbr>048</CcyNbr><CcyMnrUnts>3</CcyMnrUnts></CcyNtry>
  </CcyTbl>
</ISO_4217>
"""


def _load_generated(path: Path) -> dict[str, object]:
    namespace: dict[str, object] = {}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    return namespace


def test_generator_dedupes_skips_and_sorts_explicit_xml(tmp_path: Path) -> None:
    xml = tmp_path / "list_one.xml"
    xml.write_text(_SMALL_XML, encoding="utf-8")
    out = tmp_path / "out.py"
    result = _run_generator(str(xml), "-o", str(out))
    assert result.returncode == 0, result.stderr
    generated = _load_generated(out)
    table = generated["CURRENCIES"]
    assert isinstance(table, dict)
    assert list(table.items()) == [
        ("BHD", ("048", 3, "Bahraini Dinar")),
        ("EUR", ("978", 2, "Euro")),
    ]
    assert generated["ISO4217_PUBLISHED"] == "2030-02-03"
    text = out.read_text(encoding="utf-8")
    assert "# Source: list_one.xml" in text
    assert 'Pblshd="2030-02-03"' in text


def test_generator_refuses_conflicting_duplicates(tmp_path: Path) -> None:
    xml = tmp_path / "conflict.xml"
    xml.write_text(
        _SMALL_XML.replace(
            "<CtryNm>A</CtryNm><CcyNm>Euro</CcyNm><Ccy>EUR</Ccy>\n      <CcyNbr>978</CcyNbr>"
            "<CcyMnrUnts>2</CcyMnrUnts>",
            "<CtryNm>A</CtryNm><CcyNm>Euro</CcyNm><Ccy>EUR</Ccy>\n      <CcyNbr>978</CcyNbr>"
            "<CcyMnrUnts>3</CcyMnrUnts>",
        ),
        encoding="utf-8",
    )
    out = tmp_path / "out.py"
    result = _run_generator(str(xml), "-o", str(out))
    assert result.returncode != 0
    assert "EUR: conflicting entries" in result.stderr
    assert not out.exists()
