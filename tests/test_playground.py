"""The playground page in headless Chromium: it loads from the server alone, streams a completion and a chat
reply as tokens coloured by their probability, with the alternatives kept for the hover table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from serve_helpers import chat_model_dir, running  # noqa: E402

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_playground_streams_coloured_tokens(tmp_path, tiny_model_dir, one_thread):
    from lmforge.serve import Limits, load_engine
    from lmforge.serve.app import create_app

    folder = chat_model_dir(tmp_path / "chat_model", tiny_model_dir)
    engine = load_engine(str(folder), device="cpu", limits=Limits(max_tokens=64))
    outside = []
    try:
        with running(create_app(engine, "tiny")) as url, sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1100, "height": 700})

            def only_local(route):  # the page must need nothing but the server
                if route.request.url.startswith(url):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_local)
            page.goto(url + "/")
            assert page.inner_text("#model") == "tiny"
            page.fill("#prompt", "Le vent se lève")
            page.fill("#max_tokens", "24")
            page.click("#go")
            page.wait_for_selector("#out[data-done='1']", timeout=60_000)
            spans = page.query_selector_all("#out .tok")
            assert len(spans) >= 5, page.inner_text("#status")
            assert int(page.get_attribute("#out", "data-chunks")) > 1  # it arrived in pieces
            assert page.inner_text("#status").startswith("done")
            for s in spans:
                p = float(s.get_attribute("data-p"))
                assert 0 < p <= 1 and s.evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
                assert len(s.evaluate("e => JSON.parse(e.dataset.alts)")) == 5
            colours = {s.evaluate("e => e.style.background") for s in spans}
            assert len(colours) > 1  # coloured by probability, not one colour for all
            spans[0].hover()
            assert page.is_visible("#tip") and "%" in page.inner_text("#tip")
            page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)

            page.check("input[value=chat]")
            page.fill("#temperature", "0")
            page.fill("#prompt", "Shall I compare thee?")
            page.evaluate("document.getElementById('out').dataset.done = ''")
            page.click("#go")
            page.wait_for_selector("#out[data-done='1']", timeout=60_000)
            assert page.inner_text("#status").startswith("done"), page.inner_text("#status")
            assert len(page.query_selector_all("#chatlog .turn")) == 2
            browser.close()
    finally:
        engine.close()
    assert outside == []
    assert (tmp_path / "playground.png").stat().st_size > 10_000
