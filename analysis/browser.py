"""The Chromium / Chrome on this machine (find_browser; kaleido's static figure export uses it too),
and a report opened in it, headless, over the Chrome DevTools Protocol: which figures rendered,
which JavaScript errors were raised, and a screenshot.

    result = check_page("results/intrada_split/report.html", screenshot="docs/report.png")
    result.figures      # {div id: True if it holds a rendered plot (.main-svg)}
    result.errors       # uncaught exceptions, console.error calls, error log entries

Used by tests/test_report_browser.py and to make the screenshot in docs/. Needs a Chromium or
Chrome (`apt-get install chromium`); aiohttp (a Ray dependency) speaks the protocol.
"""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["PageCheck", "check_page", "find_browser", "CHROMIUM_FLAGS"]

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio")


_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_browser() -> str | None:
    """The Chromium / Chrome to use (here and by kaleido's figure export): $BROWSER_PATH, else the first
    of chromium, google-chrome... on PATH."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.path.exists(env) else None
    for name in _BROWSERS:
        p = shutil.which(name)
        if p:
            return p
    return None


@dataclasses.dataclass
class PageCheck:
    url: str
    figures: dict[str, bool]            # plotly div id -> rendered (.main-svg inside)
    errors: list[str]                   # JavaScript exceptions and console errors
    title: str = ""
    screenshot: str | None = None


_JS_FIGURES = """JSON.stringify(Array.from(document.querySelectorAll('.plotly-graph-div')).map(
  d => [d.id, d.querySelector('.main-svg') !== null && d.querySelectorAll('.main-svg').length > 0
        && d.getBoundingClientRect().height > 50]))"""


async def _check(url: str, screenshot: str | None, width: int, height: int, timeout: float,
                 full_page: bool) -> PageCheck:
    import aiohttp

    exe = find_browser()
    if exe is None:
        raise FileNotFoundError("no Chromium / Chrome found: apt-get install chromium, or set BROWSER_PATH")
    profile = tempfile.mkdtemp(prefix="udalab-chromium-")
    proc = subprocess.Popen([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             f"--window-size={width},{height}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ws_url = await _devtools_url(proc, exe, timeout)
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
            devtools = _DevTools(ws, timeout)
            try:
                return await _inspect(devtools, url, screenshot, width, height, full_page)
            finally:
                devtools.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def _devtools_url(proc: subprocess.Popen, exe: str, timeout: float) -> str:
    """The websocket address the browser prints on stderr once its DevTools endpoint listens."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = await asyncio.get_running_loop().run_in_executor(None, proc.stderr.readline)
        m = re.search(r"DevTools listening on (ws://\S+)", line or "")
        if m:
            return m.group(1)
        if not line and proc.poll() is not None:
            break
    raise RuntimeError(f"{exe} did not start its DevTools endpoint (exit code {proc.poll()})")


class _DevTools:
    """A DevTools websocket: numbered commands, each answered by a message with its id; every other
    message is an event, queued in `events`."""

    def __init__(self, ws, timeout: float):
        self.ws, self.timeout = ws, timeout
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.events: asyncio.Queue = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            else:
                await self.events.put(data)

    async def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send a command (to a page's session when given); its result, or RuntimeError with its error."""
        i = next(self.ids)
        fut = asyncio.get_running_loop().create_future()
        self.pending[i] = fut
        msg = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.send_str(json.dumps(msg))
        res = await asyncio.wait_for(fut, self.timeout)
        if "error" in res:
            raise RuntimeError(f"{method}: {res['error']}")
        return res.get("result", {})

    async def evaluate(self, expression: str, session: str) -> Any:
        """The value of a JavaScript expression in the page."""
        res = await self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        return res["result"].get("value")

    def drain(self, errors: list[str]):
        """Collect the errors among the events received so far."""
        while not self.events.empty():
            _collect(self.events.get_nowait(), errors)

    def close(self):
        self.reader.cancel()


async def _inspect(devtools: _DevTools, url: str, screenshot: str | None, width: int, height: int,
                   full_page: bool) -> PageCheck:
    """Open url in a new tab of the browser: its figures, errors, title and (optionally) a screenshot."""
    call = devtools.call
    errors: list[str] = []
    target = (await call("Target.createTarget", {"url": "about:blank"}))["targetId"]
    session = (await call("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
    for domain in ("Page", "Runtime", "Log"):
        await call(f"{domain}.enable", session=session)
    await call("Emulation.setDeviceMetricsOverride",
               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
    await call("Page.navigate", {"url": url}, session)
    loaded = False
    while not loaded:
        ev = await asyncio.wait_for(devtools.events.get(), devtools.timeout)
        loaded = _collect(ev, errors) == "load"
    # plotly draws synchronously on load; give queued callbacks a moment, then collect late errors
    await asyncio.sleep(0.5)
    devtools.drain(errors)
    figures = {k: bool(v) for k, v in json.loads(await devtools.evaluate(_JS_FIGURES, session))}
    title = await devtools.evaluate("document.title", session) or ""
    shot = await _screenshot(devtools, session, screenshot, width, full_page) if screenshot else None
    devtools.drain(errors)
    return PageCheck(url, figures, errors, title, shot)


async def _screenshot(devtools: _DevTools, session: str, screenshot: str, width: int, full_page: bool) -> str:
    """Write a PNG of the page (full_page: its whole height, at most 20000 px) to `screenshot`."""
    if full_page:
        dims = await devtools.evaluate("JSON.stringify([document.documentElement.scrollWidth, "
                                       "document.documentElement.scrollHeight])", session)
        _, h = json.loads(dims)
        await devtools.call("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": min(int(h), 20000), "deviceScaleFactor": 1, "mobile": False},
                            session)
        await asyncio.sleep(0.5)
    data = (await devtools.call("Page.captureScreenshot", {"format": "png"}, session))["data"]
    Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
    Path(screenshot).write_bytes(base64.b64decode(data))
    return str(screenshot)


def _collect(ev: dict, errors: list[str]) -> str | None:
    method, p = ev.get("method"), ev.get("params", {})
    if method == "Runtime.exceptionThrown":
        d = p.get("exceptionDetails", {})
        errors.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
    elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
        errors.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
    elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
        errors.append("log: " + p["entry"].get("text", ""))
    elif method == "Page.loadEventFired":
        return "load"
    return None


def check_page(path_or_url: str | os.PathLike, screenshot: str | os.PathLike | None = None, width: int = 1280,
               height: int = 900, timeout: float = 60.0, full_page: bool = False) -> PageCheck:
    """Load a page (a file path or a URL) in headless Chromium; see PageCheck."""
    s = str(path_or_url)
    url = s if "://" in s else Path(s).resolve().as_uri()
    return asyncio.run(_check(url, None if screenshot is None else str(screenshot), width, height, timeout,
                              full_page))
