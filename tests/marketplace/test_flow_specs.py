"""Every flow template has its spec file, and `numscript test marketplace/flows` passes."""

from __future__ import annotations

import io
from pathlib import Path

from django.core.management import call_command

from marketplace.flows import FLOWS, FLOWS_DIR, flow_script


def test_every_template_has_a_spec_file() -> None:
    # given
    templates = sorted(p.name.removesuffix(".num") for p in FLOWS_DIR.glob("*.num"))
    # then
    assert templates == sorted(FLOWS)
    for name in FLOWS:
        assert (FLOWS_DIR / f"{name}.num.specs.json").is_file(), name
        assert flow_script(name).strip()


def test_numscript_test_passes_on_the_flows() -> None:
    # given
    out = io.StringIO()
    # when: raises CommandError on any failed or skipped case
    call_command("numscript", "test", str(FLOWS_DIR), stdout=out)
    # then
    report = out.getvalue()
    assert "failed" not in report.split("Tests")[-1].split("\n")[0] or " 0 failed" in report
    assert "39 passed" in report
    assert Path(FLOWS_DIR, "payment.num.specs.json").name in report or "payment.num" in report


def test_numscript_check_is_clean_on_every_template() -> None:
    for name in FLOWS:
        out = io.StringIO()
        call_command("numscript", "check", str(FLOWS_DIR / f"{name}.num"), stdout=out)
        assert "no problems found" in out.getvalue(), (name, out.getvalue())
