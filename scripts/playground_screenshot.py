"""A screenshot of the playground: serve MODEL on a free local port, stream a prompt in headless Chromium,
hover a token to show its alternatives, save the page.

    python scripts/playground_screenshot.py runs/demo --prompt "Le vent se lève" --out docs/playground.png
"""

from __future__ import annotations

import argparse
import shutil
import socket
import threading
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--prompt", default="Le vent se lève")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--max-tokens", type=int, default=80)
    ap.add_argument("--hover", type=int, default=6, help="the token to hover (its alternatives are shown)")
    ap.add_argument("--out", default="docs/playground.png")
    args = ap.parse_args()

    import torch
    import uvicorn
    from playwright.sync_api import sync_playwright

    from lmforge.serve import load_engine
    from lmforge.serve.app import create_app
    from lmforge.serve.server import model_name

    torch.manual_seed(0)
    torch.set_num_threads(1)
    engine = load_engine(args.model, device="cpu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(engine, model_name(args.model)), port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as pw:
            chromium = shutil.which("chromium")
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1100, "height": 620})
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#prompt", args.prompt)
            page.fill("#temperature", str(args.temperature))
            page.dispatch_event("#temperature", "input")
            page.fill("#max_tokens", str(args.max_tokens))
            page.click("#go")
            page.wait_for_selector("#out[data-done='1']", timeout=120_000)
            spans = page.query_selector_all("#out .tok")
            spans[min(args.hover, len(spans) - 1)].hover()
            page.screenshot(path=args.out)
            browser.close()
        print(f"wrote {args.out}: {len(spans)} tokens")
    finally:
        server.should_exit = True
        engine.close()


if __name__ == "__main__":
    main()
