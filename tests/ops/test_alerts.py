"""The alert rules name only metrics /metrics exports, and each has a runbook section."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "alerts" / "eats-payments.rules.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"


def rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_metric_in_an_alert_is_exported():
    exported = set(re.findall(r'"(eats_[a-z_]+)"', (ROOT / "ops" / "metrics.py").read_text()))
    assert len(exported) >= 15
    for rule in rules():
        for name in re.findall(r"\beats_[a-z_]+", rule["expr"]):
            assert re.sub(r"_total$", "", name) in exported, (rule["alert"], name)


def test_every_alert_has_a_runbook_section():
    headings = {
        line[3:].strip().lower()
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in rules():
        assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{rule['alert'].lower()}"
        assert rule["alert"].lower() in headings, rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}
