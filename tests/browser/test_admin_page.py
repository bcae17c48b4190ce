"""The admin page in headless Chromium against a real TorchServe + proxy (a model of its own on the session's
TorchServe): sign in, drop a real JPEG, see it upright, fix it, find it counted in the Data view; deploy a canary (and
see a refusal), promote it; a wrong token gets a clear message; server and file-name text is never markup.
Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import base64
import re

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.photos import CLEAR_SCENES, encode, jpeg_with_orientation, rotated, scene
from tests.stack import (
    build_archive,
    build_untrained_archive,
    every_guess_config,
    issue_token,
    model_of_its_own,
)

pytestmark = pytest.mark.integration
MODEL = "admin_page_rotation"  # this module's model on the session's TorchServe


@pytest.fixture(scope="module")
def stack(tmp_path_factory, torchserve, demo_weights):
    """A model of its own on the session's TorchServe (what the page deploys and removes is this module's, one worker
    a version), behind a gateway of its own."""
    base, store = tmp_path_factory.mktemp("admin_page"), torchserve.model_store
    config = every_guess_config(base / "config")
    build_archive(demo_weights, "1.0", store, MODEL, config, MODEL, workers=1)
    build_archive(demo_weights, "2.0", store, f"{MODEL}-v2.0", config, MODEL, workers=1)
    build_untrained_archive(base / "untrained", "3.0", store, MODEL, workers=1)
    # the gate on its samples only: scoring versions on the real photos is test_rollout's and test_feedback_loop's
    with model_of_its_own(torchserve, MODEL, base / "proxy", workers=1,
                          PROXY_GATE_REAL_DIR=str(base / "no-real-photos")) as proxy:
        yield proxy, issue_token(proxy, "--user", "head-chef", "--scopes", "admin,predict")[1]


def sign_in(page: Page, url: str, token: str) -> None:
    page.goto(url + "/")
    page.fill("#token", token)
    page.click("#sign-in")
    expect(page.locator("#whoami")).to_be_visible()


def drop(page: Page, name: str, data: bytes, mime: str) -> None:
    """A real drop event on the drop zone, carrying a File, as a person dragging a photo in makes it."""
    page.evaluate("""([name, b64, mime]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: mime }));
        const zone = document.getElementById("drop");
        zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }""", [name, base64.b64encode(data).decode(), mime])


def version_row(page: Page, version: str):
    return page.locator("tr.version").filter(has=page.locator("td.version", has_text=re.compile(f"^{version}$")))


def test_a_wrong_token_gets_a_clear_message(stack, page):
    proxy, _ = stack
    page, _ = page
    page.goto(proxy.url + "/")
    page.fill("#token", "frs_this-is-not-a-token")
    page.click("#sign-in")
    expect(page.locator("#sign-in-error")).to_have_text(re.compile("not accepted.*not recognised"))
    expect(page.locator("#nav")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('frs_token')") is None
    screenshot(page, "sign-in-refused")


def test_drop_a_photo_see_it_upright_fix_it_and_find_it_counted(stack, page, tmp_path):
    proxy, token = stack
    page, _ = page
    sign_in(page, proxy.url, token)
    assert token not in page.url and page.evaluate("sessionStorage.getItem('frs_token')") == token

    # A phone-style JPEG: pixels stored sideways with EXIF orientation 6, and the picture itself a quarter turned.
    photo = jpeg_with_orientation(rotated(scene(CLEAR_SCENES[1]), 90), 6)
    drop(page, "dinner.jpg", photo, "image/jpeg")
    row = page.locator(".result").first
    expect(row.locator(".model-degree")).to_have_text(re.compile("90"))
    expect(row.locator(".exif-degree")).to_have_text(re.compile("270"))
    expect(row.locator(".model-version")).to_have_text("1.0")
    expect(row.locator(".confidence")).to_have_text(re.compile(r"\d+\.\d%"))
    expect(row.locator(".file-name")).to_have_text("dinner.jpg")
    upright = row.locator("img.upright")
    expect(upright).to_be_visible()
    width, height = upright.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    sent = scene(CLEAR_SCENES[1])
    assert (width, height) == sent.size  # the answer really is the photo made upright, at full size
    screenshot(page, "predict")

    row.locator("select.true-degree").select_option("180")  # the person says: it needed 180
    assert upright.evaluate("img => img.style.transform") == "rotate(-90deg)"  # the preview follows the choice
    row.locator("button.send-fix").click()
    expect(row.locator(".fix-status")).to_have_text("Saved to feedback-1 (count 1)")

    page.click("#nav-data")
    dataset = page.locator("tr.dataset").filter(has=page.locator("td.name", has_text="feedback-1"))
    expect(dataset.locator(".photos")).to_have_text("1")
    expect(dataset.locator(".c180")).to_have_text("1")
    expect(dataset.locator(".state")).to_have_text("active")
    thumb = page.locator("#dataset-items .item img.thumb").first
    expect(thumb).to_be_visible()
    page.wait_for_function("() => document.querySelector('#dataset-items img.thumb').naturalWidth > 0")
    expect(page.locator("#dataset-items .item .degree").first).to_contain_text("180")
    screenshot(page, "data")

    listing = requests.get(f"{proxy.url}/datasets/feedback-1", headers={"Authorization": f"Bearer {token}"},
                           timeout=30).json()
    (item,) = listing["items"]
    assert (item["true_degree"], item["model_degree"], item["model_version"], item["user"]) == (180, 90, "1.0",
                                                                                               "head-chef")
    page.click("#sign-out")
    expect(page.locator("#sign-in-form")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('frs_token')") is None


def test_file_names_and_server_messages_are_text_not_markup(stack, page):
    proxy, token = stack
    page, _ = page
    sign_in(page, proxy.url, token)
    name = '<img src=x onerror="document.title=\'owned\'"><b>menu</b>.jpg'
    drop(page, name, b"this is not a photo at all", "image/jpeg")
    row = page.locator(".result").first
    expect(row.locator(".error")).to_contain_text("not_an_image")
    expect(row.locator(".file-name")).to_have_text(name)
    assert row.locator(".file-name img, .file-name b").count() == 0
    assert page.title() != "owned"


def test_a_predict_only_token_sees_only_the_predict_view(stack, page):
    proxy, _ = stack
    page, _ = page
    sign_in(page, proxy.url, issue_token(proxy, "--user", "waiter", "--scopes", "predict")[1])
    expect(page.locator("#view-predict")).to_be_visible()
    expect(page.locator("#nav-data")).to_be_hidden()
    expect(page.locator("#nav-models")).to_be_hidden()
    expect(page.locator("#nav-tokens")).to_be_hidden()


def test_admin_deploys_a_canary_sees_a_refusal_and_promotes(stack, page):
    proxy, token = stack
    page, _ = page
    sign_in(page, proxy.url, token)
    page.click("#nav-models")
    expect(version_row(page, "1.0").locator(".default")).to_have_text("default")

    def deploy(archive: str, canary: str) -> None:
        page.select_option("#deploy-archive", archive)
        page.fill("#deploy-canary", canary)
        page.click("#deploy")
        expect(page.locator("#confirm-text")).to_contain_text(archive)
        page.click("#confirm-yes")

    deploy(f"{MODEL}-v3.0.mar", "10")
    status = page.locator("#models-status")
    refusal = "^Refused: version 3.0 refused by the smoke gate: the gate's samples: accuracy"
    expect(status).to_have_text(re.compile(refusal), timeout=120_000)
    expect(status).to_have_class(re.compile("error"))
    screenshot(page, "models-refused")
    expect(version_row(page, "3.0")).to_have_count(0)
    page.select_option("#deploy-archive", f"{MODEL}-v3.0.mar")  # the refused candidate, cleaned away
    page.click("#remove-archive")
    expect(page.locator("#confirm-text")).to_contain_text(f"Delete {MODEL}-v3.0.mar")
    page.click("#confirm-yes")
    expect(status).to_have_text(f"Removed {MODEL}-v3.0.mar", timeout=30_000)
    expect(page.locator(f"#deploy-archive option[value='{MODEL}-v3.0.mar']")).to_have_count(0)

    deploy(f"{MODEL}-v2.0.mar", "50")
    expect(status).to_have_text(re.compile("^Deployed 2.0"), timeout=120_000)
    expect(version_row(page, "2.0").locator(".canary")).to_have_text("50%")
    for _ in range(6):  # predictions split between default and canary, then the side-by-side panel
        requests.post(f"{proxy.url}/predictions/{MODEL}", data=encode(scene()), timeout=60,
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"})
    page.click("#models-refresh")
    expect(page.locator("#signals tr.signal-canary .version")).to_have_text("2.0")
    expect(page.locator("#signals tr.signal-default .version")).to_have_text("1.0")
    screenshot(page, "models")

    version_row(page, "2.0").locator("button.promote").click()
    expect(page.locator("#confirm-text")).to_contain_text("1.0 will be drained")
    page.click("#confirm-yes")
    expect(status).to_have_text("2.0 is now the default", timeout=120_000)
    expect(version_row(page, "2.0").locator(".default")).to_have_text("default")
    expect(version_row(page, "1.0")).to_have_count(0)
    versions = requests.get(f"{proxy.url}/admin/models/{MODEL}", headers={"Authorization": f"Bearer {token}"},
                            timeout=30).json()["versions"]
    assert [(row["version"], row["default"]) for row in versions] == [("2.0", True)]
    expect(page.locator("#rollback")).to_have_text("Roll back to 1.0")  # the page names where a rollback goes
    audit = page.locator("#audit-log tbody tr")
    expect(audit.first).to_contain_text("promote")
    expect(audit.first).to_contain_text("head-chef")
    expect(audit.filter(has_text="refused 422 gate_refused")).to_have_count(1)  # the refused 3.0 is on record
    expect(audit.filter(has_text="remove_archive")).to_contain_text(f"{MODEL}-v3.0.mar")

    page.click("#rollback")
    expect(page.locator("#confirm-text")).to_contain_text("Roll back to 1.0? 2.0 will be drained")
    page.click("#confirm-yes")
    expect(status).to_have_text("Rolled back: 1.0 is now the default", timeout=120_000)
    expect(page.locator("#rollback")).to_have_text("Roll back (no earlier default)")  # never a toggle back to 2.0
    expect(page.locator("#rollback")).to_be_disabled()
    expect(page.locator("#default-history tbody tr").first).to_contain_text("rollback")


def test_admin_issues_a_token_copies_it_once_sees_it_used_and_revokes_it(stack, page):
    """Issue 32: tokens on the page. Listed without their secret, the new one shown once with a copy button, its
    last use and its revocation seen, both changes in the audit log."""
    proxy, token = stack
    page, _ = page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=proxy.url)
    sign_in(page, proxy.url, token)
    page.click("#nav-tokens")
    expect(page.locator("tr.token td.user", has_text="head-chef").first).to_be_visible()
    page.fill("#token-user", "sous-chef")
    page.uncheck("#token-admin")
    page.fill("#token-days", "7")
    page.click("#issue-token")
    page.click("#confirm-yes")
    expect(page.locator("#tokens-status")).to_have_text(re.compile(r"Issued token \d+ for sous-chef"))
    issued = page.locator("#new-token-value").text_content()
    assert issued.startswith("frs_")
    page.click("#copy-token")
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == issued

    headers = {"Authorization": f"Bearer {issued}"}
    assert requests.get(f"{proxy.url}/whoami", headers=headers, timeout=30).json()["user"] == "sous-chef"
    page.click("#tokens-refresh")
    row = page.locator("tr.token").filter(has=page.locator("td.user", has_text="sous-chef"))
    expect(row.locator("td.scopes")).to_have_text("predict")
    expect(row.locator("td.last-used")).not_to_have_text("never")
    screenshot(page, "admin-tokens")
    assert issued not in page.locator("#tokens").inner_html()  # the list never holds a secret

    row.get_by_role("button", name=re.compile("Revoke token")).click()
    page.click("#confirm-yes")
    expect(row.locator("td.state")).to_have_text("revoked")
    page.wait_for_timeout(700)  # past the gateway's half-second lookup cache
    assert requests.get(f"{proxy.url}/whoami", headers=headers, timeout=30).status_code == 401
    page.click("#nav-models")
    audit = page.locator("#audit-log")
    expect(audit.locator("tr", has_text="revoke_token").first).to_be_visible()
    expect(audit.locator("tr", has_text="issue_token").first).to_contain_text("sous-chef")
    page.click("#sign-out")
    sign_in(page, proxy.url, token)
    page.click("#nav-tokens")
    expect(page.locator("#new-token")).to_be_hidden()
    assert issued not in page.content()  # shown once: gone with the session that issued it
