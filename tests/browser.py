"""Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`):
the standard library only, no websocket client and no WebDriver.

Chromium reads commands from its fd 3 and writes replies and events to its fd 4, each a JSON
message ended by a NUL byte. `Browser.page(url)` opens a tab on one flat session; every
console error, uncaught exception and failed load of the tab is kept in `Page.errors`.
"""

from __future__ import annotations

import base64
import io
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

# Flags that work on these machines (no sandbox as root, no GPU, nothing fetched from outside).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    """Debian's `chromium` (or another Chromium-like browser on PATH), None when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    def __init__(self, executable: str, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: its chatter never blocks it
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()
        # bash (dash refuses fds above 9) puts our pipe ends on the fds Chromium expects, then
        # becomes Chromium
        self.process = subprocess.Popen(
            [
                "bash",
                "-c",
                f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}',
                executable,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                "about:blank",
            ],
            pass_fds=(to_browser, from_browser),
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self.events = b"", 0, []

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and wait for its reply (events meanwhile go to `events`)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive(f"{method} reply")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str | None = None) -> dict:
        """The first event `method` of `session` not yet waited for."""
        while True:
            for event in self.events:
                if event.get("method") == method and event.get("sessionId") == session and not event.get("_seen"):
                    event["_seen"] = True
                    return event
            self.events.append(self._receive(method))

    def _receive(self, what: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise TimeoutError(f"Chromium: no {what} within {self.timeout} s")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                self._stderr.seek(0)
                raise RuntimeError(
                    f"Chromium exited ({self.process.poll()}): {self._stderr.read().decode(errors='replace')[-2000:]}"
                )
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def page(self, url: str, width: int = 1400, height: int = 900) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        page.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired", session)
        return page

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.call("Browser.close")
                self.process.wait(timeout=30)
        except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            pass  # killed below
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            os.close(self._commands)
            os.close(self._replies)
            self._stderr.close()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def call(self, method: str, params: dict | None = None) -> dict:
        return self.browser.call(method, params, self.session)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (awaited when it is a promise)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, clip: dict):
        """The pixels of `clip` ({x, y, width, height} in CSS pixels) as a PIL image."""
        from PIL import Image

        # not captureBeyondViewport: it resizes the view for the capture, and the page's layout
        # may move under the clip
        data = self.call("Page.captureScreenshot", {"format": "png", "clip": {**clip, "scale": 1}})["data"]
        return Image.open(io.BytesIO(base64.b64decode(data)))

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads (network, CSP) of this page."""
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(details.get("exception", {}).get("description") or details.get("text"))
            elif event["method"] == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"{params['entry']['source']}: {params['entry']['text']} {params['entry'].get('url', '')}")
        return found


# ---------------------------------------------------------------- Snakemake's report (9.x)
# A single-page React app with no URL routing: a result is reached as a reader reaches it,
# by clicking its category in the navigation, then the eye button of its row (for each
# value of the label toggles above the table). `app` is the app's own global.

RENDERED = "new Promise(done => setTimeout(done, 0))"  # React has rendered the click's update
CLICK_CATEGORY = f"""(async name => {{
    const home = document.querySelector('nav ol a');
    if (home) home.click();  // back to the menu that lists the categories
    await {RENDERED};
    const link = [...document.querySelectorAll('nav a')].find(a => a.textContent.trim() === name);
    if (link) link.click();
    await {RENDERED};
    return !!link;
}})"""
CLICK_TOGGLE = f"""(async n => {{
    document.querySelectorAll('nav input[type=radio]')[n].click();
    await {RENDERED};
}})"""
SHOW_RESULT = f"""(async row => {{
    document.querySelectorAll('nav a[iconname=eye]')[row].click();
    await {RENDERED};
    const img = [...document.images].find(i => !i.closest('nav'));
    if (app.state.content !== 'img' || !img) return null;
    await img.decode();
    // the layout may still move (centring, a scrollbar): wait for two frames with one box
    let box = img.getBoundingClientRect();
    for (let frame = 0; frame < 60; frame++) {{
        await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
        const now = img.getBoundingClientRect();
        if (now.x === box.x && now.y === box.y && now.width === box.width && now.height === box.height) break;
        box = now;
    }}
    return {{path: app.state.resultPath, same_data: img.src === results[app.state.resultPath].data_uri,
             natural: [img.naturalWidth, img.naturalHeight],
             box: {{x: box.x, y: box.y, width: box.width, height: box.height}}}};
}})"""


MARGIN = 8  # CSS pixels of page around each screenshot of a result


def report_images(page: Page) -> dict[str, tuple[dict, object]]:
    """Every image result the report's navigation leads to: its path -> (what the page shows,
    a screenshot of it with up to MARGIN pixels of the page around it; `image["inset"]` is
    where the image's box starts in the screenshot). Fails when a category of the report's
    data has no link."""
    shown = {}
    for category in page.evaluate("Object.keys(categories)"):
        assert page.evaluate(f"{CLICK_CATEGORY}({json.dumps(category)})"), f"no link to category {category}"
        toggles = page.evaluate("document.querySelectorAll('nav input[type=radio]').length")
        for toggle in range(-1, toggles):  # -1: as the category opens
            if toggle >= 0:
                page.evaluate(f"{CLICK_TOGGLE}({toggle})")
            for row in range(page.evaluate("document.querySelectorAll('nav a[iconname=eye]').length")):
                image = page.evaluate(f"{SHOW_RESULT}({row})")
                if image is not None and image["path"] not in shown:
                    shown[image["path"]] = image, page.screenshot(with_margin(image))
    return shown


def with_margin(image: dict) -> dict:
    """The clip of `image`'s box grown by MARGIN on each side (not past the page's top left);
    records in `image["inset"]` the box's offset inside it."""
    box = image["box"]
    x, y = max(0.0, box["x"] - MARGIN), max(0.0, box["y"] - MARGIN)
    image["inset"] = (round(box["x"] - x), round(box["y"] - y))
    width, height = box["x"] - x + box["width"] + MARGIN, box["y"] - y + box["height"] + MARGIN
    return {"x": x, "y": y, "width": width, "height": height}
