"""Browser tests: Playwright for Python driving Debian's Chromium (`/usr/bin/chromium`, the
`chromium` package; never a downloaded browser) against the app served by pytest-django's
`live_server`, with the Stripe emulator delivering signed webhooks into it.

Marked `browser` (run alone with `-m browser`); they run in `make test`. A failing test
leaves a screenshot in var/browser-failures/<test>.png.

The database is transactional here (the live server is another thread); the flush after each
test empties the append-only tables too (audit's flush command, on test databases only)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stripe_emulator import ChaosConfig, EmulatorServer
from tests.marketplace.helpers import SECRET

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FAILURES = Path(__file__).resolve().parents[2] / "var" / "browser-failures"
PASSWORD = "correct-horse-battery"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.django_db(transaction=True))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One browser per module. Playwright's sync API runs an event loop in the test's thread:
    while it is open, Django is told that the ORM calls the tests make between page actions
    are safe (they are synchronous and single-threaded); both end with the module."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium); "
            "the browser tests never download a browser"
        )
    from playwright.sync_api import sync_playwright

    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _launch(sync_playwright)
    finally:
        if saved is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


def _launch(sync_playwright: Any) -> Iterator[Any]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_settings(settings: Any, stripe_atomic_violations: list[str], celery_eager: None) -> Any:
    settings.LEDGER_SEAL_ON_COMMIT = False
    settings.REFUNDS_APPROVAL_THRESHOLD = {"USD/2": 5000}
    settings.MARKETPLACE_DEFER_SECONDS = 0.05
    settings.STRIPE_EVENTS_MAX_ATTEMPTS = 50
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    return settings


@pytest.fixture
def emulator(live_server: Any, browser_settings: Any) -> Iterator[EmulatorServer]:
    server = EmulatorServer(
        webhook_url=live_server.url + "/webhooks/stripe/",
        webhook_secret=SECRET,
        chaos=ChaosConfig(seed=5),
    )
    server.start()
    browser_settings.STRIPE_API_BASE = server.url
    browser_settings.STRIPE_API_KEY = "sk_test_browser"
    browser_settings.STRIPE_WEBHOOK_SECRETS = [SECRET]
    try:
        yield server
    finally:
        server.stop()


class Staff:
    """One person at one browser: `staff.sign_in()`, `staff.go("/staff/orders/")`."""

    def __init__(self, page: Any, base_url: str, username: str) -> None:
        self.page = page
        self.base_url = base_url
        self.username = username

    def go(self, path: str) -> Any:
        return self.page.goto(self.base_url + path)

    def sign_in(self, password: str = PASSWORD) -> None:
        self.go("/staff/login/")
        self.page.get_by_label("Username").fill(self.username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(re.compile(r".*/staff/$"))


@pytest.fixture
def person(
    chromium: Any, live_server: Any, browser_settings: Any, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """`person(username)`: a fresh browser context (its own cookies) for a user; screenshots
    of every open page are saved if the test fails."""
    contexts: list[tuple[str, Any]] = []

    def open_for(username: str) -> Staff:
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append((username, context))
        return Staff(context.new_page(), live_server.url, username)

    yield open_for
    failed = getattr(request.node, "report_call", None)
    for username, context in contexts:
        if failed is not None and failed.failed:
            FAILURES.mkdir(parents=True, exist_ok=True)
            for i, page in enumerate(context.pages):
                name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
                page.screenshot(path=str(FAILURES / f"{name}-{username}-{i}.png"), full_page=True)
        context.close()
