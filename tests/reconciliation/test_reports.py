"""Reports: the API (runs, summary JSON, items, CSV), the command's tables, CSV and JSON,
the admin pages, and the nightly beat entry."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from reconciliation.matching import Outcome
from reconciliation.models import ReconciliationRun
from reconciliation.services import reconciliation_run
from tests.reconciliation.helpers import DAY, WINDOW, book_payment, payment

pytestmark = pytest.mark.django_db


@pytest.fixture
def day_with_problems() -> ReconciliationRun:
    ok, ok_bt = payment(2000)
    book_payment(ok, 2000, ok_bt["fee"], txn=ok_bt["id"])
    short, short_bt = payment(2000)
    book_payment(short, 1500, short_bt["fee"])
    payment(999)  # missing in the ledger
    return reconciliation_run(
        window_start=WINDOW[0],
        window_end=WINDOW[1],
        import_from_stripe=False,
        now=DAY + timedelta(days=5),
    )


@pytest.fixture
def staff_client() -> APIClient:
    user = get_user_model().objects.create_user("finance", password="x", is_staff=True)
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_api_lists_runs_and_shows_the_summary(staff_client: APIClient, day_with_problems: Any):
    run = day_with_problems

    listing = staff_client.get("/api/v1/reconciliation/runs/")
    detail = staff_client.get(f"/api/v1/reconciliation/runs/{run.pk}/")

    assert listing.status_code == 200
    assert [r["id"] for r in listing.json()["results"]] == [run.pk]
    body = detail.json()
    assert detail.status_code == 200
    assert body["counts"]["matched"] == 1
    assert body["counts"]["amount_mismatch"] == 1
    assert body["counts"]["missing_in_ledger"] == 1
    assert body["problems"] == 2
    assert body["clean"] is False
    assert body["window"] == {"start": WINDOW[0].isoformat(), "end": WINDOW[1].isoformat()}
    fee = (2000 * 29 + 500) // 1000 + 30
    assert body["totals"]["USD/2"]["ledger"] == (2000 - fee) + (1500 - fee)
    assert body["totals"]["USD/2"]["explained"] == -500 - (999 - (999 * 29 + 500) // 1000 - 30)


def test_api_items_filters_and_csv(staff_client: APIClient, day_with_problems: Any):
    run = day_with_problems

    problems = staff_client.get(f"/api/v1/reconciliation/runs/{run.pk}/items/?problems=1")
    mismatches = staff_client.get(
        f"/api/v1/reconciliation/runs/{run.pk}/items/?outcome=amount_mismatch"
    )
    bad = staff_client.get(f"/api/v1/reconciliation/runs/{run.pk}/items/?outcome=nonsense")
    exported = staff_client.get(f"/api/v1/reconciliation/runs/{run.pk}/items.csv")

    assert problems.json()["count"] == 2
    assert [i["outcome"] for i in mismatches.json()["results"]] == ["amount_mismatch"]
    assert mismatches.json()["results"][0]["difference"] == -500
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_outcome"
    assert exported.status_code == 200
    assert exported["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert sorted(r["outcome"] for r in rows) == ["amount_mismatch", "matched", "missing_in_ledger"]


def test_api_needs_staff_and_answers_404_for_unknown_runs(staff_client: APIClient):
    anonymous = APIClient().get("/api/v1/reconciliation/runs/")
    missing = staff_client.get("/api/v1/reconciliation/runs/999999/")

    assert anonymous.status_code in (401, 403)
    assert missing.status_code == 404
    assert missing.json()["code"] == "run_not_found"


def test_command_prints_tables_and_writes_csv(tmp_path: Any):
    charge, bt = payment(2000)
    book_payment(charge, 2000, bt["fee"], with_fee=False)
    payment(500)
    out = io.StringIO()
    path = tmp_path / "items.csv"

    call_command(
        "reconcile",
        "--date",
        "2026-03-10",
        "--no-import",
        "--csv",
        str(path),
        stdout=out,
        stderr=io.StringIO(),
    )

    text = out.getvalue()
    assert "Outcomes" in text
    assert "Stripe fee missing" in text
    assert "Missing in ledger" in text
    assert "Open problems (1)" in text
    rows = list(csv.DictReader(path.open()))
    assert {r["outcome"] for r in rows} == {"fee_missing", "missing_in_ledger"}
    fee_row = next(r for r in rows if r["outcome"] == "fee_missing")
    assert fee_row["repair_action"] == "book_fee"
    assert fee_row["repair_status"] == "applied"


def test_command_repair_applies_then_runs_again_and_json(tmp_path: Any):
    charge, bt = payment(2000)
    book_payment(charge, 2000, bt["fee"], txn=bt["id"], reference="a")
    book_payment(charge, 2000, bt["fee"], txn=bt["id"], reference="b")
    out = io.StringIO()

    call_command(
        "reconcile",
        "--from",
        "2026-03-10",
        "--to",
        "2026-03-10",
        "--no-import",
        "--repair",
        "--json",
        stdout=out,
    )

    first, second = json.loads(out.getvalue())
    assert first["counts"][Outcome.MATCHED_TWICE] == 1
    assert second["counts"][Outcome.MATCHED] == 1
    assert second["changes"]["changed"] == {"matched_twice -> matched": 1}
    assert second["previous_run"] == first["id"]
    assert second["problems"] == 0


def test_command_rejects_bad_windows():
    with pytest.raises(CommandError, match="not a date"):
        call_command("reconcile", "--date", "yesterday-ish", "--no-import")
    with pytest.raises(CommandError, match="--to must not be before --from"):
        call_command("reconcile", "--from", "2026-03-10", "--to", "2026-03-01", "--no-import")
    with pytest.raises(CommandError, match="either --date or --from"):
        call_command("reconcile", "--date", "2026-03-10", "--from", "2026-03-10", "--no-import")
    assert ReconciliationRun.objects.count() == 0


def test_command_strict_exits_non_zero_with_problems():
    payment(500)
    with pytest.raises(CommandError) as raised:
        call_command(
            "reconcile", "--date", "2026-03-10", "--no-import", "--strict", stdout=io.StringIO()
        )
    assert raised.value.returncode == 2


def test_admin_pages_render(client: Any, day_with_problems: Any):
    admin_user = get_user_model().objects.create_superuser("root", password="x")
    client.force_login(admin_user)
    run = day_with_problems

    pages = [
        "/admin/reconciliation/reconciliationrun/",
        f"/admin/reconciliation/reconciliationrun/{run.pk}/change/",
        f"/admin/reconciliation/reconciliationitem/?run__id__exact={run.pk}",
        "/admin/reconciliation/stripebalancetransaction/",
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
    detail = client.get(f"/admin/reconciliation/reconciliationrun/{run.pk}/change/")
    assert b"missing_in_ledger" in detail.content


def test_nightly_run_is_scheduled_by_beat():
    entry = settings.CELERY_BEAT_SCHEDULE["reconciliation-nightly"]
    assert entry["task"] == "staff.finance_nightly"  # reconciliation + report + invoicing check
    assert entry["schedule"].hour == {2}


def test_the_nightly_run_has_one_entry_point():
    from config.celery import app

    # every beat entry names a registered task, and only staff.finance_nightly reconciles
    # nightly (the old reconciliation.nightly, which skipped the invoicing check, is gone)
    app.loader.import_default_modules()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in app.tasks, name
    nightly = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if "nightly" in e["task"]]
    assert [e["task"] for e in nightly] == ["staff.finance_nightly"]
    assert "reconciliation.nightly" not in app.tasks
