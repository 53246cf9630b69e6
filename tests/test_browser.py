"""Browser tests: the web chat and the triage desk in real headless Chromium (Debian's), driven by Playwright.

Screenshots go to tests/artifacts/screenshots/ (see README). A missing browser
skips these tests locally, and fails them when REQUIRE_BROWSER is set (CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
HERE = Path(__file__).parent
AXE = HERE / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = HERE / "artifacts" / "screenshots"
PERSONA = yaml.safe_load((HERE / "data" / "personas.yml").read_text())["self_referral"]["answers"]
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def _missing(what: str):
    if os.environ.get("REQUIRE_BROWSER"):
        pytest.fail(f"REQUIRE_BROWSER is set but {what}")
    pytest.skip(what)


@pytest.fixture(scope="module")
def browser():
    executable = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if not executable:
        _missing("Chromium is not installed (apt-get install chromium)")
    if not AXE.exists():
        _missing("axe-core is not installed (cd tests/browser && npm ci)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser, stack):
    # bypass_csp only lets the test inject axe-core; the CSP header itself is tested in test_gateway.
    context = browser.new_context(viewport={"width": 1024, "height": 800}, bypass_csp=True)
    page = context.new_page()
    external: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(stack.web_url) else external.append(r.url))
    page.goto(stack.web_url + "/")
    wait_for_question(page)
    yield page
    assert not [u for u in external if not u.startswith("https://www.google.com")], external
    context.close()


def wait_for_question(page, field: str | None = None, timeout: float = 20_000) -> str:
    selector = f'#answer[data-field="{field}"]' if field else "#answer[data-field]"
    page.wait_for_selector(selector, timeout=timeout)
    page.wait_for_function("() => !document.getElementById('send').disabled")
    return page.get_attribute("#answer", "data-field")


def answer_with_keyboard(page, text: str) -> None:
    """Type into the focused answer box and send with the keyboard only."""
    page.focus("#answer") if page.evaluate("document.activeElement.id") != "answer" else None
    page.keyboard.type(text)
    page.keyboard.press("Tab")  # to the Send button
    assert page.evaluate("document.activeElement.id") == "send"
    page.keyboard.press("Enter")


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def axe_violations(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_TAGS)
    return [{"id": v["id"], "nodes": [n["target"] for n in v["nodes"]]} for v in result["violations"]]


def test_start_page_is_accessible(page):
    screenshot(page, "1-start")
    assert axe_violations(page) == []
    assert page.get_attribute("#transcript", "role") == "log"
    assert page.get_attribute("#transcript", "aria-live") == "polite"


def test_a_full_self_referral_with_the_keyboard_only(page, stack):
    seen_choice = seen_mid_form = False
    field = wait_for_question(page)
    for _ in range(80):
        if field == "review":
            break
        if field == "referrer_type" and not seen_choice:
            screenshot(page, "2-question-with-a-choice")
            assert page.locator("#choices button").count() == 3
            seen_choice = True
        if field == "presenting_problem" and not seen_mid_form:
            assert axe_violations(page) == []
            seen_mid_form = True
        answer_with_keyboard(page, PERSONA[field])
        page.wait_for_function(
            f"() => document.getElementById('answer').dataset.field !== '{field}'"
            f" || document.querySelectorAll('.msg.bot').length > 0",
            timeout=20_000,
        )
        field = wait_for_question(page)
    assert field == "review"
    screenshot(page, "4-summary")
    assert axe_violations(page) == []
    assert "Phone number: +14155552671" in page.inner_text("#transcript")
    answer_with_keyboard(page, "send")
    page.wait_for_selector("text=Your referral has been sent")


def test_a_crisis_message_is_accessible_with_call_and_text_buttons(page):
    answer_with_keyboard(page, "I want to end my life")
    page.wait_for_selector("#transcript a.resource[href='tel:988']")
    assert page.locator("#transcript a.resource[href='sms:988']").count() >= 1
    screenshot(page, "3-crisis-message")
    assert axe_violations(page) == []


def test_get_help_now_is_always_there_with_the_local_crisis_line(page):
    page.click("#help-now")
    assert page.is_visible("#help-panel a[href='tel:911']")
    assert page.is_visible("#help-panel a[href='sms:988']")
    # From the service configuration, not the page: the local crisis team.
    page.wait_for_selector("#help-panel a[href='tel:5550100100']")


@pytest.mark.parametrize("how", ["button", "escape twice"])
def test_quick_exit_clears_the_chat(page, how):
    page.route("https://www.google.com/**", lambda route: route.fulfill(body="<title>Search</title>"))
    answer_with_keyboard(page, "No")
    if how == "button":
        page.click("#leave")
    else:
        page.keyboard.press("Escape")
        page.keyboard.press("Escape")
    page.wait_for_url("https://www.google.com/**")
    assert "transcript" not in page.content()


def test_after_leaving_the_site_a_new_tab_starts_fresh_and_a_kept_cookie_opens_nothing(page, stack):
    page.route("https://www.google.com/**", lambda route: route.fulfill(body="<title>Search</title>"))
    answer_with_keyboard(page, "No")  # simple words: the chat has moved on to consent
    wait_for_question(page, "consent")
    [kept] = [c for c in page.context.cookies() if c["name"] == "ra_session"]
    page.click("#leave")
    page.wait_for_url("https://www.google.com/**")
    page.context.add_cookies([kept])  # as if the cookie had been copied before leaving
    for _ in range(20):  # the beacon is sent as the page goes; give it a moment
        fresh = page.context.new_page()
        fresh.goto(stack.web_url + "/")
        field = wait_for_question(fresh)
        if field == "easy_read":
            break
        fresh.close()
        page.context.add_cookies([kept])
        time.sleep(0.25)
    assert field == "easy_read"  # a fresh start, not the old conversation's consent question
    assert "No" not in [t.strip() for t in fresh.locator(".msg.me").all_inner_texts()]


NO_HORIZONTAL_SCROLL = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"


def reach_referrer_type(page) -> None:
    answer_with_keyboard(page, "No")  # simple words
    wait_for_question(page, "consent")
    answer_with_keyboard(page, "Yes")
    wait_for_question(page, "referrer_type")


def test_no_horizontal_scroll_at_320_px(page):
    page.set_viewport_size({"width": 320, "height": 640})
    reach_referrer_type(page)
    assert page.evaluate(NO_HORIZONTAL_SCROLL)


def test_no_horizontal_scroll_at_200_percent_zoom(browser, stack):
    # Browser zoom at 200% in a 1280 x 800 window lays the page out in a
    # 640 x 400 CSS-pixel viewport at two device pixels per CSS pixel.
    context = browser.new_context(viewport={"width": 640, "height": 400}, device_scale_factor=2)
    page = context.new_page()
    page.goto(stack.web_url + "/")
    wait_for_question(page)
    reach_referrer_type(page)
    page.click("#help-now")
    page.click("#resume summary")
    assert page.evaluate(NO_HORIZONTAL_SCROLL)
    for selector in ("#help-now", "#leave", "#choices button", "#send", "#resume-code"):
        box = page.locator(selector).first.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 640, selector
    screenshot(page, "5-zoom-200-percent")
    context.close()


def test_stop_shows_its_choices_as_buttons_and_carry_on_returns(page):
    reach_referrer_type(page)
    answer_with_keyboard(page, "stop")
    page.wait_for_selector("#choices button:has-text('Delete my answers')")
    page.click("#choices button:has-text('Carry on')")
    page.wait_for_selector("#choices button:has-text('Myself')")
    buttons = page.locator("#choices button").all_inner_texts()
    assert buttons == ["Myself", "Someone else", "I'm a professional"]


def test_pause_then_carry_on_from_the_code_in_another_browser(page, browser, stack):
    import re

    reach_referrer_type(page)
    answer_with_keyboard(page, "pause")
    page.wait_for_selector("text=Your code is")
    code = re.search(r"Your code is ([0-9A-Z]{4}-[0-9A-Z]{4})", page.inner_text("#transcript")).group(1)

    context = browser.new_context(viewport={"width": 1024, "height": 800})
    other = context.new_page()
    other.goto(stack.web_url + "/")
    wait_for_question(other, "easy_read")  # a new conversation, until the code is given
    other.click("#resume summary")
    other.fill("#resume-code", code.lower())
    other.press("#resume-code", "Enter")
    other.wait_for_selector("text=Welcome back")
    assert wait_for_question(other, "referrer_type") == "referrer_type"
    context.close()


# ---------------------------------------------------------------- the triage desk

STAFF_PASSWORD = "browser desk password 1"
NINA: dict[str, str] = {}
BAND_RANK = {"Emergency": 0, "Same day": 1, "Urgent": 2, "Routine": 3, "None": 4}


@pytest.fixture(scope="module")
def desk_referrals(stack) -> dict[str, str]:
    """A triage account made with the CLI, and three referrals in the running stack's store."""
    from test_triage import CRITERIA, routine

    from bot import services
    from bot.store.unit_of_work import UnitOfWork

    made = subprocess.run(
        [
            str(Path(sys.executable).with_name("referral-assistant")),
            "staff",
            "add",
            "nina",
            "--role",
            "triage",
            "--password-stdin",
        ],
        input=STAFF_PASSWORD + "\n",
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    NINA["key"] = made.stdout.split("key: ")[1].split()[0]  # as she would add it to her phone
    NINA["database_url"] = stack.database_url
    refs = {}
    for key, answers, crisis in (
        ("routine", routine(), False),
        ("urgent", routine(recent_hospital_discharge=True), False),
        ("emergency", routine(), True),
    ):
        refs[key] = services.submit_referral(
            UnitOfWork(stack.database_url),
            services.Submission(
                f"desk-browser-{key}", "self", answers, crisis_flag=crisis, criteria=CRITERIA
            ),
        ).reference
    return refs


@pytest.fixture
def staff_page(browser, stack, desk_referrals):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.goto(stack.web_url + "/staff/queue")  # not signed in: sent to sign in
    page.wait_for_selector("h1:has-text('Sign in')")
    yield page
    context.close()


def staff_sign_in(page, password: str = STAFF_PASSWORD) -> None:
    """Nina signs in with her authenticator's code. Each code works once and
    these tests sign in more often than every 30 seconds, so her last
    accepted step is forgotten first (tests/test_staff.py tests replays)."""
    from bot import staff
    from bot.store.models import StaffUser
    from bot.store.unit_of_work import UnitOfWork

    with UnitOfWork(NINA["database_url"]) as uow:
        uow.session.query(StaffUser).filter_by(username="nina").update({"totp_last_step": None})
        uow.commit()
    page.fill("#username", "nina")
    page.fill("#password", password)
    page.fill("#code", staff.totp(NINA["key"]))
    page.press("#password", "Enter")


def test_staff_sign_in_queue_open_a_referral_and_record_a_decision(staff_page, desk_referrals, stack):
    from bot import services
    from bot.store.unit_of_work import UnitOfWork

    page = staff_page
    assert axe_violations(page) == []
    staff_sign_in(page, "not the password at all")
    page.wait_for_selector("[role=alert]:has-text('That did not work')")
    staff_sign_in(page)
    page.wait_for_selector("h1:has-text('Referral queue')")
    screenshot(page, "6-staff-queue")
    assert axe_violations(page) == []

    rows = page.locator("table.queue tbody tr")
    references = rows.locator("th a").all_inner_texts()
    bands = [BAND_RANK[b] for b in rows.locator(".band").all_inner_texts()]
    assert bands == sorted(bands)  # most urgent first
    mine = [r for r in references if r in desk_referrals.values()]
    assert mine == [desk_referrals[k] for k in ("emergency", "urgent", "routine")]
    assert "Crisis" in rows.nth(references.index(desk_referrals["emergency"])).inner_text()

    page.click(f"text={desk_referrals['urgent']}")
    page.wait_for_selector(f"h1:has-text('Referral {desk_referrals['urgent']}')")
    assert "never whether the person gets help" in page.inner_text("main")
    assert "Left hospital in the last 4 weeks" in page.inner_text("main")
    assert axe_violations(page) == []
    page.check("#decision-accept")
    page.click("button:has-text('Record the decision')")
    page.wait_for_selector("[role=status]:has-text('Decision recorded.')")
    screenshot(page, "7-staff-referral")
    record = services.find_referral(UnitOfWork(stack.database_url), desk_referrals["urgent"])
    [decision] = [e for e in record["events"] if e["kind"] == "decision"]
    assert decision["detail"]["by"] == "nina" and decision["detail"]["decision"] == "accept"
    assert record["status"] == "accepted"


def test_staff_figures_page_is_accessible_with_charts(staff_page):
    page = staff_page
    staff_sign_in(page)
    page.wait_for_selector("h1:has-text('Referral queue')")
    page.click("nav >> text=Audit figures")
    page.wait_for_selector("h1:has-text('Audit figures')")
    assert page.locator("svg[role=img]").count() >= 3
    screenshot(page, "8-staff-figures")
    assert axe_violations(page) == []
    page.click("text=Sign out")
    page.wait_for_selector("h1:has-text('Sign in')")
    page.goto(page.url.replace("/staff/login", "/staff/figures"))
    page.wait_for_selector("h1:has-text('Sign in')")  # signed out: nothing without signing in again
