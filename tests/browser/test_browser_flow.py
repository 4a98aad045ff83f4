"""The demo shop in a real browser: Chromium driven by Playwright, against ``run_demo``.

``test_browser_flow_*`` walks what a shop's staff do: sign in, select products, run
"Generate model images with HiDream" once with the template picker (one card by mouse, one by
keyboard) and once with a prompt, watch the task list fill itself with pictures, open a task,
approve a picture into the product gallery and find it on the storefront, marked "AI".
Every step is photographed; with ``SCREENSHOTS=1`` (``make screenshots``) the pictures go to
``docs/screenshots/NN-name.png``, otherwise to a temporary folder.

``test_browser_accessibility_axe`` runs axe-core (``npm install`` puts it in node_modules) on
every page of that walk and fails on any "serious" or "critical" violation.

Both need Debian's Chromium at /usr/bin/chromium (``apt-get install -y chromium``); without it,
or without the ``playwright`` package, they are skipped. ``playwright install`` is not needed.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import wait_for
from tests.demo_process import running_demo

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOT_DIR = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}
LAUNCH_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PICTURES_TIMEOUT = 40_000  # ms: the simulator takes ~2 s per task, the list reloads every 5 s
PROMPT = "A smiling woman in her thirties on a sunny city street, natural light, full body"
BLOCKING_IMPACTS = ("serious", "critical")


def _require_browser() -> None:
    """Skip (the suite's only skip) when there is no Chromium or no Playwright to drive it."""
    how = (
        "install Chromium with `apt-get install -y chromium` (Debian/Ubuntu; it must be at "
        f"{CHROMIUM}) and Playwright with `pip install -r requirements-dev.txt`; "
        "`playwright install` is not needed"
    )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip(f"Browser tests need the playwright package: {how}.")
    if not CHROMIUM.exists():
        pytest.skip(f"Browser tests need Chromium, not found at {CHROMIUM}: {how}.")


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def demo(browser, tmp_path_factory):
    """``manage.py run_demo`` on free ports with its own database and media; SIGINT stops it."""
    tmp = tmp_path_factory.mktemp("browser-demo")
    # DEBUG: runserver serves static and media files only with DEBUG.
    with running_demo(tmp, SECRET_KEY="test-browser-demo", DEBUG="true") as running:
        yield running
        proc = running["proc"]
        assert proc.poll() is None, f"the demo died during the test:\n{running['log'].read_text()}"


@pytest.fixture
def page(browser, demo):
    """A fresh browser context (no cookies), signed in as admin / admin."""
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.base = demo["url"]
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def shots(tmp_path):
    """``shots(page, "NN-name")`` saves a PNG: to docs/screenshots with SCREENSHOTS=1."""
    if os.environ.get("SCREENSHOTS") == "1":
        folder = SCREENSHOT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("[0-9][0-9]-*.png"):
            old.unlink()
    else:
        folder = tmp_path / "screenshots"
        folder.mkdir()
    taken: list[Path] = []

    def shoot(page, name: str, *, full_page: bool = False) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        taken.append(path)
        return path

    shoot.taken = taken
    return shoot


# -- steps shared by both tests ----------------------------------------------------------


def _sign_in(page, shots=None) -> None:
    from playwright.sync_api import expect

    page.goto(f"{page.base}/admin/login/?next=/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin")
    if shots:
        shots(page, "01-sign-in")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#user-tools")).to_contain_text("admin")
    expect(page).to_have_url(re.compile(r"/admin/$"))


def _open_generate_page(page, rows: list[int], shots=None, shot_name="") -> list[str]:
    """Select these product rows, choose the HiDream action, Go; returns the products' names."""
    from playwright.sync_api import expect

    page.goto(f"{page.base}/admin/catalog/product/")
    table_rows = page.locator("#result_list tbody tr")
    expect(table_rows.first).to_be_visible()
    names = []
    for index in rows:
        row = table_rows.nth(index)
        row.locator("input.action-select").check()
        names.append(row.locator("td.field-name, th.field-name").inner_text().strip())
    page.select_option("select[name=action]", "generate_model_images")
    expect(page.locator(".action-counter")).to_contain_text(f"{len(rows)} of")
    if shots:
        shots(page, shot_name)
    page.locator("button[name=index]").click()
    expect(page.locator("form.hidream-form")).to_be_visible()
    expect(page.locator("#content h1")).to_have_text("Generate model images with HiDream")
    for name in names:
        expect(page.locator(".hidream-products")).to_contain_text(name)
    return names


def _approve_first_to_gallery(page) -> None:
    """Click the first "Approve + add to gallery" button on a task page."""
    button = page.locator("button[name=decision][value=approve_gallery]").first
    target = button.evaluate("b => b.formAction")
    assert re.search(r"/images/\d+/review/$", target), (
        f"'Approve + add to gallery' on the task page posts to {target}, not to the review "
        "decision URL (.../images/<id>/review/): a <form> nested in the admin change form is "
        "dropped by the HTML parser, so the button submits the change form and nothing is "
        "approved. Give the buttons formaction= (or form= pointing at a form outside it)."
    )
    button.click()


def _wait_for_pictures(page, count: int) -> None:
    """The task list reloads itself while tasks run: wait, without reloading, for pictures."""
    from playwright.sync_api import expect

    expect(page.locator("img.hidream-thumb")).to_have_count(count, timeout=PICTURES_TIMEOUT)


# -- the walk ----------------------------------------------------------------------------


def test_browser_flow_from_products_to_the_storefront(page, shots):
    from playwright.sync_api import expect

    started = time.monotonic()
    _sign_in(page, shots)
    shots(page, "02-admin-index")

    # 1. Three products, the action, the template picker: a model card by mouse, a scene
    #    card by keyboard (Tab from the model cards to the scene cards, then Space).
    _open_generate_page(page, [0, 1, 2], shots, "03-products-selected")
    human_cards = page.locator("#picker-human_template .hidream-pick")
    scene_cards = page.locator("#picker-scene_template .hidream-pick")
    expect(human_cards.first).to_be_visible()
    assert human_cards.count() >= 2 and scene_cards.count() >= 1, "templates were synced"
    human_cards.nth(1).click()
    human_radio = human_cards.nth(1).locator("input[type=radio]")
    expect(human_radio).to_be_checked()
    human_radio.focus()
    page.keyboard.press("Tab")
    scene_radio = scene_cards.first.locator("input[type=radio]")
    expect(scene_radio).to_be_focused()
    expect(scene_radio).not_to_be_checked()
    page.keyboard.press("Space")
    expect(scene_radio).to_be_checked()
    expect(page.locator(".hidream-m")).to_have_text("6")  # 3 products × 2 pictures
    shots(page, "04-generate-template-picker", full_page=True)
    page.locator("input[name=confirm]").click()
    expect(page).to_have_url(re.compile(r"/admin/hidream_models/modelimagetask/\?batch="))
    expect(page.locator(".messagelist .success")).to_contain_text("3 products sent to HiDream")
    shots(page, "05-tasks-submitted")

    # 2. Three other products, in prompt mode: the counter follows the typing.
    _open_generate_page(page, [3, 4, 5])
    page.locator("label", has=page.locator("input[name=mode][value=prompt]")).click()
    prompt = page.locator("textarea[name=prompt]")
    counter = page.locator(".hidream-counter")
    expect(prompt).to_be_visible()
    expect(page.locator(".hidream-template-fields")).to_be_hidden()
    max_length = counter.get_attribute("data-max")
    expect(counter).to_have_text(f"0 / {max_length}")
    prompt.press_sequentially(PROMPT[:20])
    expect(counter).to_have_text(f"20 / {max_length}")
    prompt.press_sequentially(PROMPT[20:])
    expect(counter).to_have_text(f"{len(PROMPT)} / {max_length}")
    page.fill("input[name=image_count]", "1")
    expect(page.locator(".hidream-m")).to_have_text("3")  # 3 products × 1 picture
    shots(page, "06-generate-prompt", full_page=True)
    page.locator("input[name=confirm]").click()
    expect(page).to_have_url(re.compile(r"\?batch="))

    # 3. The task list fills itself in: count its own reloads while we only wait.
    loads: list[str] = []
    page.on("load", lambda p: loads.append(p.url))
    _wait_for_pictures(page, 3)
    assert loads, "the task list should have reloaded itself while the tasks ran"
    shots(page, "07-tasks-pictures-arrived")
    page.goto(f"{page.base}/admin/hidream_models/modelimagetask/")  # all tasks, both runs
    _wait_for_pictures(page, 9)  # both runs: 3 × 2 + 3 × 1
    expect(page.locator("script[src*=autorefresh]")).to_have_count(0, timeout=PICTURES_TIMEOUT)
    shots(page, "08-tasks-all-done", full_page=True)

    # 4. A task, its pictures, and "Approve + add to gallery".
    page.locator("#result_list tbody tr", has=page.locator("img.hidream-thumb")).last.locator(
        "th a"
    ).click()
    expect(page.locator(".hidream-card img.hidream-large").first).to_be_visible()
    product_href = page.locator(".field-product_link a").get_attribute("href")
    product_id = re.search(r"/catalog/product/(\d+)/", product_href).group(1)
    shots(page, "09-task-page", full_page=True)
    _approve_first_to_gallery(page)
    expect(page.locator(".messagelist .success")).to_contain_text("Approve + add to gallery")
    expect(page.locator(".hidream-published").first).to_contain_text("Published")
    expect(page.locator("button[name=decision][value=unpublish]")).to_have_count(1)
    shots(page, "10-task-approved-to-gallery", full_page=True)

    page.goto(f"{page.base}/admin/hidream_models/modelimagetask/review/")
    expect(page.locator(".hidream-review-row").first).to_be_visible()
    expect(page.locator("#content-main > p").first).to_contain_text(
        re.compile(r"\d+ pictures? waits? for review")
    )
    shots(page, "11-review-queue")

    # 5. The storefront: the product's gallery shows the picture, marked AI-generated.
    page.goto(f"{page.base}/")
    expect(page.locator(".shop-card").first).to_be_visible()
    shots(page, "12-storefront-list", full_page=True)
    page.locator(f".shop-card a[href='/products/{product_id}/']").click()
    expect(page).to_have_url(re.compile(rf"/products/{product_id}/$"))
    gallery_item = page.locator(".shop-gallery figure", has=page.locator(".shop-ai"))
    expect(gallery_item).to_have_count(1)
    expect(gallery_item.locator(".shop-ai")).to_have_text("AI-generated image")
    picture = gallery_item.locator("img")
    expect(picture).to_have_attribute("alt", re.compile(r"\S"))
    picture.scroll_into_view_if_needed()
    wait_for(
        lambda: picture.evaluate("img => img.complete && img.naturalWidth > 0"),
        timeout=10,
        message="the gallery picture to load",
    )
    shots(page, "13-storefront-product-ai-picture", full_page=True)

    assert len(shots.taken) == 13
    for path in shots.taken:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert time.monotonic() - started < 75, "the browser walk should stay well under 90 s"


# -- accessibility -----------------------------------------------------------------------


def _axe(page, label: str, found: list) -> None:
    """Run axe-core on the page as it is now; add its violations to ``found``."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    found.extend((label, violation) for violation in result["violations"])


def _axe_version(page) -> str:
    return page.evaluate("() => window.axe ? axe.version : '?'")


def _describe(found: list) -> str:
    lines = []
    for label, violation in found:
        lines.append(
            f"[{violation['impact']}] {violation['id']} on {label}: {violation['help']} "
            f"({violation['helpUrl']})"
        )
        for node in violation["nodes"]:
            lines.append(f"    at {' '.join(map(str, node['target']))}: {node['html'][:300]}")
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            if summary:
                lines.append(f"       {summary[:400]}")
    return "\n".join(lines)


def test_browser_accessibility_axe(page):
    """axe-core on every page of the walk: no serious or critical violations."""
    from playwright.sync_api import expect

    if not AXE.exists():
        pytest.fail(
            f"axe-core is missing ({AXE.relative_to(ROOT)}): run `npm install` in {ROOT} "
            "(package.json pins axe-core) and run the tests again.",
            pytrace=False,
        )
    found: list = []
    _sign_in(page)
    _axe(page, "admin index /admin/", found)

    page.goto(f"{page.base}/admin/catalog/product/")
    _axe(page, "product changelist /admin/catalog/product/", found)

    # Its own task, one picture, so the pages below have content whatever ran before.
    _open_generate_page(page, [-1])
    _axe(page, "generate page (template mode)", found)
    page.locator("#picker-human_template .hidream-pick").first.click()
    page.locator("#picker-scene_template .hidream-pick").first.click()
    page.fill("input[name=image_count]", "1")
    page.locator("input[name=confirm]").click()
    expect(page).to_have_url(re.compile(r"\?batch="))
    _wait_for_pictures(page, 1)
    # Finished: the list stops reloading itself, so axe is not cut short by a reload.
    expect(page.locator("script[src*=autorefresh]")).to_have_count(0, timeout=PICTURES_TIMEOUT)
    _axe(page, "task changelist /admin/hidream_models/modelimagetask/", found)

    page.locator("#result_list tbody tr th a").first.click()
    expect(page.locator("button[name=decision][value=approve_gallery]").first).to_be_visible()
    product_href = page.locator(".field-product_link a").get_attribute("href")
    product_id = re.search(r"/catalog/product/(\d+)/", product_href).group(1)
    task_path = urlparse(page.url).path
    _axe(page, "task change page (with review buttons)", found)

    page.goto(f"{page.base}/admin/hidream_models/modelimagetask/review/")
    expect(page.locator(".hidream-review-row").first).to_be_visible()
    _axe(page, "review queue /admin/hidream_models/modelimagetask/review/", found)

    # Publish it from the review queue (the walk above does it from the task page).
    row = page.locator(".hidream-review-row", has=page.locator(f"a[href='{task_path}']"))
    row.locator("button[name=decision][value=approve_gallery]").click()
    expect(page.locator(".messagelist .success")).to_contain_text("Approve + add to gallery")

    page.goto(f"{page.base}/")
    expect(page.locator(".shop-card").first).to_be_visible()
    _axe(page, "storefront product list /", found)
    page.goto(f"{page.base}/products/{product_id}/")
    expect(page.locator(".shop-gallery .shop-ai").first).to_be_visible()
    _axe(page, f"storefront product page /products/{product_id}/", found)

    report = _describe(found)
    print(f"axe-core {_axe_version(page)}: {len(found)} violation(s)\n{report}")
    blocking = [(label, v) for label, v in found if v["impact"] in BLOCKING_IMPACTS]
    if blocking:
        pytest.fail(
            f"{len(blocking)} serious/critical accessibility violation(s):\n"
            f"{_describe(blocking)}\n\nAll violations:\n{report}",
            pytrace=False,
        )
