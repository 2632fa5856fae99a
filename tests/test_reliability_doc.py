"""RELIABILITY.md is generated from the tests' records and lists every case they define."""

from __future__ import annotations

import re

import reliability_report

CASES: dict[str, str] = {}  # this module only checks the others


def test_reliability_md_lists_every_declared_case():
    cases = reliability_report.declared_cases()
    assert len(cases) > 50
    text = reliability_report.DOC.read_text()
    missing = reliability_report.missing_from_doc(cases, text)
    assert missing == [], (f"RELIABILITY.md lacks {missing}: run the reliability tests, then "
                           "`python tests/reliability_report.py`")
    assert "not recorded yet" not in text, "regenerate RELIABILITY.md after a full test run"
    listed = set(re.findall(r"^\| `([^`]+)` \|", text, re.M))
    assert listed <= set(cases), f"RELIABILITY.md lists undefined cases: {listed - set(cases)}"


def test_every_recorded_case_id_is_declared():
    """A literal id passed to record() must be declared in its module's CASES."""
    cases = reliability_report.declared_cases()
    used = set()
    for module in reliability_report.test_modules():
        source = (reliability_report.TESTS_DIR / f"{module}.py").read_text()
        used |= set(re.findall(r'record\(\s*"([^"]+)"', source))
    assert used, "no record() calls found"
    undeclared = sorted(c for c in used if c not in cases)
    assert undeclared == []
