"""The console in headless Chromium against a real `factory5g up --demo` subprocess.

What an OT engineer relies on: the plant's live values show and move, the token leaves the
address bar, a bad token gets a clear form instead of a blank page, alarms and commands show
live with what each role may do about them, and the page talks to no host but the platform's own
(the plants are air-gapped). Chromium missing is a failure, never a skip.
"""

from __future__ import annotations

import re
import signal
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Route,
    expect,
    sync_playwright,
)

from ..helpers import FactoryProcess, steel_text, wait_until_sync

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1440, "height": 900}
# The page has a Content-Security-Policy without 'unsafe-eval': predicates passed to
# wait_for_function must be function expressions, which Playwright calls without eval.
VALUE_SHOWN = """([path]) => {
  const e = document.querySelector(`[data-signal-path="${path}"]`);
  return e !== null && e.textContent !== "—" && e.dataset.quality === "good";
}"""
VALUE_CHANGED = """([path, before]) => {
  const e = document.querySelector(`[data-signal-path="${path}"]`);
  return e !== null && e.textContent !== before;
}"""


class Server(FactoryProcess):
    """`factory5g up --demo` in a subprocess."""

    def __init__(self, cwd: Path, port: int) -> None:
        super().__init__(["up", "--demo", "--port", str(port)], cwd)
        self.port = port


@dataclass
class Recorder:
    """Every URL the page asks for and every console error it logs."""

    urls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("request", lambda r: self.urls.append(r.url))
        page.on("websocket", lambda ws: self.urls.append(ws.url))
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)

    def foreign(self, port: int) -> list[str]:
        """URLs that are not this server: a CDN, a font host, a telemetry beacon…"""
        return [
            u
            for u in self.urls
            if urlsplit(u).scheme not in ("http", "ws")
            or urlsplit(u).hostname != "127.0.0.1"
            or urlsplit(u).port != port
        ]


@pytest.fixture
def demo(tmp_path: Path, free_port: int) -> Iterator[Server]:
    server = Server(tmp_path, free_port)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert CHROMIUM.is_file(), f"Chromium is needed for the console tests: {CHROMIUM} is missing"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def console_url(demo: Server) -> tuple[str, str]:
    url = demo.find(r"console:\s+(http://127\.0\.0\.1:\d+/#token=(f5g_\S+))")
    token = demo.find(r"admin token: (f5g_\S+)").group(1)
    assert url.group(2) == token
    return url.group(1), token


def open_console(browser: Browser, url: str) -> tuple[BrowserContext, Page, Recorder]:
    """A fresh browser context on ``url``, every request and console error recorded."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    seen = Recorder()
    seen.attach(page)
    page.goto(url)
    return context, page, seen


def value_text(page: Page, path: str) -> str:
    return page.locator(f'[data-signal-path="{path}"]').inner_text()


def test_console_shows_the_live_plant_and_talks_to_no_other_host(
    demo: Server, browser: Browser, tmp_path: Path
) -> None:
    url, token = console_url(demo)
    base = f"http://127.0.0.1:{demo.port}/"
    context, page, seen = open_console(browser, url)

    # The token left the address bar (and so the history) but is kept for the next visit.
    expect(page).to_have_url(base)
    assert page.evaluate("() => localStorage.getItem('factory5g.token')") == token

    expect(page.locator("#site-name")).to_have_text("Demo Steel — Hot Strip Mill")
    expect(page.locator("#site-prefix")).to_have_text("88.118.8")
    expect(page.locator("#user-name")).to_have_text("demo-admin")
    expect(page.locator("#user-role")).to_have_text("admin")
    expect(page.locator("#tree .level-1 .label")).to_have_text(["hot-rolling", "utilities"])
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#samples")).to_have_text(re.compile(r"^[1-9][\d,]*$"))

    # Live values appear, with their quality, and move.
    for path in ("f1.speed", "substation.active_power"):
        page.wait_for_function(VALUE_SHOWN, arg=[path], timeout=15_000)
        first = value_text(page, path)
        assert re.fullmatch(r"-?[\d,]+\.\d{1,3}", first), f"{path} shows {first!r}"
        page.wait_for_function(VALUE_CHANGED, arg=[path, first], timeout=15_000)
        assert value_text(page, path) != first
    expect(page.locator('[data-signal-path="guard.door_closed"]')).to_have_text(
        re.compile(r"^(OPEN|CLOSED)$")
    )
    row = page.locator("button.sig", has=page.locator('[data-signal-path="f1.speed"]'))
    expect(row.locator(".unit")).to_have_text("m/s")
    expect(row.locator(".age")).to_have_text(re.compile(r"^(<1|\d+) s$"))

    page.screenshot(path=tmp_path / "console.png")

    # A signal opens the detail panel: a 10 min chart with its unit, kept live.
    row.click()
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-path")).to_have_text("f1.speed")
    expect(page.locator("#detail-chart .axis-title").first).to_have_text("m/s")
    expect(page.locator("#detail-chart path.series")).to_have_count(1)
    page.screenshot(path=tmp_path / "console-detail.png")
    page.keyboard.press("Escape")
    expect(page.locator("#detail")).to_be_hidden()

    # The tree narrows the overview to an area.
    page.locator('#tree .level-1 .node:has-text("utilities")').click()
    expect(page.locator("#cards .card")).to_have_count(3)
    expect(page.locator("#scope")).to_have_text("utilities")

    # A reload without the hash comes back from the stored token.
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    page.wait_for_function(VALUE_SHOWN, arg=["f1.speed"], timeout=15_000)

    assert seen.errors == [], seen.errors
    assert seen.foreign(demo.port) == [], seen.foreign(demo.port)
    assert any("/api/v1/live" in u for u in seen.urls)

    # The server stops cleanly under an open console, which shows that it lost the feed.
    demo.p.send_signal(signal.SIGTERM)
    assert demo.p.wait(15) == 0, demo.output
    expect(page.locator("#conn")).to_have_attribute(
        "data-state", re.compile(r"^(reconnecting|offline)$")
    )
    context.close()


def test_console_asks_for_a_token_when_the_one_given_is_refused(
    demo: Server, browser: Browser, tmp_path: Path
) -> None:
    _, token = console_url(demo)
    context, page, seen = open_console(
        browser, f"http://127.0.0.1:{demo.port}/#token=f5g_00000000_x"
    )

    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#login-error")).to_have_text(re.compile("unknown or revoked"))
    expect(page.locator("#conn")).to_have_attribute("data-state", "offline")
    expect(page).to_have_url(f"http://127.0.0.1:{demo.port}/")
    assert page.evaluate("() => localStorage.getItem('factory5g.token')") is None
    page.screenshot(path=tmp_path / "console-login.png")

    # Pasting the right token opens the console.
    page.locator("#token-input").fill(token)
    page.locator("#login-form button[type=submit]").click()
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    page.wait_for_function(VALUE_SHOWN, arg=["substation.active_power"], timeout=15_000)

    # The refused token cost two 401 answers (/me and /site), logged by Chromium; nothing else.
    unexpected = [e for e in seen.errors if "status of 401" not in e]
    assert unexpected == [], unexpected
    assert seen.foreign(demo.port) == [], seen.foreign(demo.port)
    context.close()
    demo.p.send_signal(signal.SIGTERM)
    assert demo.p.wait(15) == 0, demo.output


SPARKPLUG_EDGE_NODES = ["hot-mill/ue-f2-plc", "hot-mill/ue-table-plc", "utilities/ue-utilities"]
# The counter in column `col` of the row `key` of the open connectivity view grew past `n`, for
# every [key, col, n] given.
COUNTS_GREW = """([before]) => before.every(([key, col, n]) => {
  const e = document.querySelector(`#connect-table tr[data-key="${key}"] [data-col="${col}"]`);
  return e !== null && Number(e.textContent.replace(/\\D/g, "")) > n;
})"""
WARN_MARKER = """(td) => getComputedStyle(td.firstElementChild, "::before").backgroundColor"""
CLOCK = r"\d\d:\d\d:\d\d"
LOAD_TOLERANT = re.compile(r"^(ok|warn)$")  # the tree entry's state; warn: an overrun poll cycle


def row(page: Page, key: str) -> Locator:
    return page.locator(f'#connect-table tr[data-key="{key}"]')


def count_in(page: Page, key: str, col: str) -> int:
    return int(re.sub(r"\D", "", row(page, key).locator(f'[data-col="{col}"]').inner_text()))


def fact(page: Page, name: str) -> Locator:
    return page.locator(f'#connect-facts [data-fact="{name}"]')


def not_found(route: Route) -> None:
    route.fulfill(
        status=404,
        content_type="application/problem+json",
        body='{"type": "about:blank", "title": "Not Found", "status": 404}',
    )


def test_console_shows_the_sparkplug_host_and_its_edge_nodes(
    demo: Server, browser: Browser, tmp_path: Path
) -> None:
    url, _ = console_url(demo)
    context, page, seen = open_console(browser, url)

    # The entry at the foot of the tree says how many edge nodes publish; it opens the view.
    entry = page.locator("#tree-sparkplug")
    expect(entry).to_be_visible()
    expect(page.locator("#count-sparkplug")).to_have_text("3 edge nodes")
    expect(entry).to_have_attribute("data-state", "ok")
    entry.click()
    expect(entry).to_have_attribute("data-selected", "true")
    expect(page.locator("#connect")).to_be_visible()
    expect(page.locator("#cards")).to_be_hidden()
    expect(page.locator("#scope")).to_have_text("Connectivity › Sparkplug B")
    expect(page.locator("#scope-count")).to_have_text("3 edge nodes · 3 online")

    # The host: connected to the demo's in-process broker.
    expect(page.locator("#connect-state")).to_have_attribute("data-state", "connected")
    expect(page.locator("#connect-state .label")).to_have_text("connected")
    expect(fact(page, "host id")).to_have_text("factory5g")
    expect(fact(page, "broker")).to_contain_text(re.compile(r"^127\.0\.0\.1:\d+"))
    host_in = fact(page, "messages in").locator(".num")
    expect(host_in).to_have_text(re.compile(r"^[1-9][\d,]*$"))

    # The demo plant's edge nodes (stand F1 and the run-out table's PLC speak OPC UA and
    # Modbus), mapped, online, in name order, seen just now.
    rows = page.locator("#connect-table tr[data-key]")
    expect(rows).to_have_count(3)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.key)") == SPARKPLUG_EDGE_NODES
    expect(page.locator('#connect-table tbody[data-group="unmapped"]')).to_have_count(0)
    for edge, devices in zip(SPARKPLUG_EDGE_NODES, ["1/1", "1/1", "3/3"], strict=True):
        r = row(page, edge)
        expect(r).to_have_attribute("data-online", "true")
        expect(r).to_have_attribute("data-mapped", "true")
        expect(r).to_have_attribute("data-attention", "none")
        expect(r.locator('[data-col="state"]')).to_have_text("online")
        expect(r.locator('[data-col="devices"]')).to_have_text(devices)
        expect(r.locator('[data-col="decode-errors"]')).to_have_attribute("data-warn", "false")
        expect(r.locator('[data-col="last-seen"]')).to_have_text(re.compile(r"^(<1|\d) s ago$"))

    # Refreshed every 3 s while open: the counts grow and a rate appears.
    before = [[edge, "messages", count_in(page, edge, "messages")] for edge in SPARKPLUG_EDGE_NODES]
    assert all(n > 0 for _, _, n in before), before
    first_in = int(re.sub(r"\D", "", host_in.inner_text()))
    page.wait_for_function(COUNTS_GREW, arg=[before], timeout=15_000)
    assert int(re.sub(r"\D", "", host_in.inner_text())) > first_in
    expect(rows.first.locator('[data-col="rate"]')).to_have_text(re.compile(r"^\d"))
    page.screenshot(path=tmp_path / "console-sparkplug.png")
    assert seen.errors == [], seen.errors

    # An unmapped edge node comes first, under its own heading, with its problems in amber.
    def with_unmapped(route: Route) -> None:
        answer = route.fetch()
        body = answer.json()
        stray = {
            **body["nodes"][0],
            "group": "packaging",
            "edge": "line7-plc",
            "mapped": False,
            "devices": [],
            "gaps": 0,
            "rebirths": 0,
            "decode_errors": 3,
        }
        body["nodes"].append(stray)
        body["unmapped"] = [stray]
        route.fulfill(response=answer, json=body)

    page.route("**/api/v1/connect/sparkplug", with_unmapped)
    stray_row = row(page, "packaging/line7-plc")
    expect(stray_row).to_have_attribute("data-mapped", "false", timeout=10_000)
    expect(rows).to_have_count(4)
    assert rows.first.get_attribute("data-key") == "packaging/line7-plc"
    expect(page.locator('#connect-table tbody[data-group="unmapped"] tr.group')).to_contain_text(
        "Unmapped — map them in the site file ([[sparkplug.map]])"
    )
    expect(page.locator('#connect-table tbody[data-group="mapped"] tr.group')).to_have_text(
        "Mapped to the site's equipment"
    )
    expect(stray_row).to_have_attribute("data-attention", "warn")
    expect(entry).to_have_attribute("data-state", "warn")
    errors_cell = stray_row.locator('[data-col="decode-errors"]')
    expect(errors_cell).to_have_attribute("data-warn", "true")
    expect(stray_row.locator('[data-col="gaps"]')).to_have_attribute("data-warn", "false")
    assert errors_cell.evaluate(WARN_MARKER) not in ("", "rgba(0, 0, 0, 0)")
    expect(page.locator("#scope-count")).to_have_text("4 edge nodes · 4 online · 1 unmapped")
    page.screenshot(path=tmp_path / "console-sparkplug-unmapped.png")

    # A site without a Sparkplug host (404): its entry goes, the overview comes back; the other
    # adapters' entries stay.
    page.unroute("**/api/v1/connect/sparkplug")
    page.route("**/api/v1/connect/sparkplug", not_found)
    expect(entry).to_be_hidden(timeout=10_000)
    expect(page.locator("#connect")).to_be_hidden()
    expect(page.locator("#scope")).to_have_text("All equipment")
    expect(page.locator("#cards .card")).to_have_count(7)
    expect(page.locator("#connectivity")).to_be_visible()
    expect(page.locator("#tree-opcua")).to_be_visible()

    # The one 404 is Chromium's own log line for it; nothing else went wrong.
    unexpected = [e for e in seen.errors if "status of 404" not in e]
    assert unexpected == [], unexpected
    assert seen.foreign(demo.port) == [], seen.foreign(demo.port)
    context.close()


def test_console_shows_the_opcua_endpoints_and_the_modbus_devices(
    demo: Server, browser: Browser, tmp_path: Path
) -> None:
    url, _ = console_url(demo)
    context, page, seen = open_console(browser, url)

    # Both clients have their entry under Sparkplug's, with their count and a green dot.
    expect(page.locator("#connectivity .node .label")).to_have_text(
        ["Sparkplug B", "OPC UA", "Modbus TCP"]
    )
    expect(page.locator("#count-opcua")).to_have_text("1 endpoint")
    expect(page.locator("#count-modbus")).to_have_text("1 device")
    expect(page.locator("#tree-opcua")).to_have_attribute("data-state", "ok")
    # On a loaded machine a Modbus poll cycle may overrun its 1 s (amber), never more.
    expect(page.locator("#tree-modbus")).to_have_attribute("data-state", LOAD_TOLERANT)

    # OPC UA: stand F1's server, connected, every item monitored, samples flowing.
    page.locator("#tree-opcua").click()
    expect(page.locator("#scope")).to_have_text("Connectivity › OPC UA")
    expect(page.locator("#scope-count")).to_have_text("1 endpoint · 1 connected")
    expect(page.locator("#connect-state")).to_have_attribute("data-state", "connected")
    expect(page.locator("#connect")).to_have_attribute(
        "aria-label", "OPC UA client and its endpoints"
    )
    f1 = row(page, "stand-f1")
    expect(f1).to_have_attribute("data-connected", "true")
    expect(f1).to_have_attribute("data-attention", "none")
    # The port may be the site file's or, under [network] emulate, the emulated 5G link's.
    url_cell = f1.locator('[data-col="url"]')
    expect(url_cell).to_have_text(re.compile(r"^opc\.tcp://127\.0\.0\.1:\d+/factory5g/stand-f1$"))
    assert url_cell.get_attribute("title") == url_cell.inner_text()
    expect(f1.locator('[data-col="security"]')).to_have_text("none")
    expect(f1.locator('[data-col="state"]')).to_have_text("connected")
    expect(f1.locator('[data-col="items"]')).to_have_text("7")
    expect(f1.locator('[data-col="bad-items"]')).to_have_attribute("data-warn", "false")
    expect(f1.locator('[data-col="last-data"]')).to_have_text(re.compile(r"^(<1|\d) s ago$"))
    expect(f1).to_have_attribute("title", re.compile(r"^publishing interval 100 ms\n"))
    expect(fact(page, "items monitored")).to_have_text("7")
    before = [["stand-f1", "samples", count_in(page, "stand-f1", "samples")]]
    assert before[0][2] > 0, before
    page.wait_for_function(COUNTS_GREW, arg=[before], timeout=15_000)
    expect(f1.locator('[data-col="rate"]')).to_have_text(re.compile(r"^\d"))
    expect(fact(page, "samples")).to_contain_text("/s")
    page.screenshot(path=tmp_path / "console-opcua.png")

    # Modbus TCP: the run-out table's PLC, its one poll group every second.
    page.locator("#tree-modbus").click()
    expect(page.locator("#tree-modbus")).to_have_attribute("data-selected", "true")
    expect(page.locator("#tree-opcua")).to_have_attribute("data-selected", "false")
    expect(page.locator("#scope")).to_have_text("Connectivity › Modbus TCP")
    expect(page.locator("#scope-count")).to_have_text("1 device · 1 connected")
    expect(page.locator("#connect-table thead th")).to_have_count(11)
    plc = row(page, "table-plc")
    expect(plc).to_have_attribute("data-connected", "true")
    expect(plc).to_have_attribute("data-attention", re.compile(r"^(none|warn)$"))
    expect(plc.locator('[data-col="address"]')).to_have_text(
        re.compile(r"^127\.0\.0\.1:\d+ / unit 1$")
    )
    expect(plc.locator('[data-col="poll-groups"]')).to_have_text(
        re.compile(r"^1 s · 3 req/cycle · \d+(\.\d)? ms( · \d+ overruns)?$")
    )
    for col in ("exceptions", "reconnects"):
        expect(plc.locator(f'[data-col="{col}"]')).to_have_attribute("data-warn", "false")
    expect(plc.locator('[data-col="last-answer"]')).to_have_text(re.compile(r"^(<1|\d) s ago$"))
    before = [["table-plc", "requests", count_in(page, "table-plc", "requests")]]
    assert before[0][2] > 0, before
    page.wait_for_function(COUNTS_GREW, arg=[before], timeout=15_000)
    expect(plc.locator('[data-col="rate"]')).to_have_text(re.compile(r"^\d"))
    page.screenshot(path=tmp_path / "console-modbus.png")
    assert seen.errors == [], seen.errors

    # A second device, down, with its error: red row, amber client, the why in the tooltips.
    def with_a_device_down(route: Route) -> None:
        answer = route.fetch()
        body = answer.json()
        down = {
            **body["devices"][0],
            "id": "coiler-plc",
            "port": 1502,
            "connected": False,
            "timeouts": 4,
            "last_error": "connection refused",
            "last_ok": None,
            "groups": [{**body["devices"][0]["groups"][0], "overruns": 2}],
        }
        body["devices"].append(down)
        body["connected"] = False
        route.fulfill(response=answer, json=body)

    page.route("**/api/v1/connect/modbus", with_a_device_down)
    coiler = row(page, "coiler-plc")
    expect(coiler).to_have_attribute("data-attention", "bad", timeout=10_000)
    assert page.locator("#connect-table tr[data-key]").evaluate_all(
        "rs => rs.map(r => r.dataset.key)"
    ) == ["coiler-plc", "table-plc"]
    expect(coiler.locator('[data-col="state"]')).to_have_text("disconnected")
    expect(coiler.locator('[data-col="state"]')).to_have_attribute(
        "title", "last error: connection refused"
    )
    expect(coiler.locator('[data-col="timeouts"]')).to_have_attribute("data-warn", "true")
    expect(coiler.locator(".pg")).to_have_attribute("data-warn", "true")
    expect(coiler.locator('[data-col="last-answer"]')).to_have_text("never")
    expect(page.locator("#connect-state")).to_have_attribute("data-state", "partial")
    expect(page.locator("#connect-state")).to_have_attribute(
        "title", "last error: coiler-plc: connection refused"
    )
    expect(page.locator("#scope-count")).to_have_text("2 devices · 1 connected")
    expect(page.locator("#tree-modbus")).to_have_attribute("data-state", "bad")
    expect(fact(page, "timeouts")).to_have_attribute("data-warn", "true")
    page.screenshot(path=tmp_path / "console-modbus-down.png")

    # The API fails: the figures stay, dimmed, under the error and the time they are from.
    page.unroute("**/api/v1/connect/modbus")
    page.route(
        "**/api/v1/connect/modbus",
        lambda route: route.fulfill(
            status=503,
            content_type="application/problem+json",
            body='{"title": "Service Unavailable", "status": 503, "detail": "runtime busy"}',
        ),
    )
    error = page.locator("#connect-error")
    expect(error).to_have_text(
        re.compile(
            rf"^Cannot refresh the Modbus TCP client's counters \(runtime busy\) — "
            rf"the figures below are from {CLOCK}$"
        ),
        timeout=10_000,
    )
    expect(page.locator("#connect")).to_have_attribute("data-stale", "true")
    expect(page.locator("#tree-modbus")).to_have_attribute("data-state", "unknown")
    expect(coiler).to_be_visible()
    page.screenshot(path=tmp_path / "console-modbus-error.png")
    page.unroute("**/api/v1/connect/modbus")
    expect(error).to_be_hidden(timeout=10_000)
    expect(page.locator("#connect")).to_have_attribute("data-stale", "false")
    expect(coiler).to_have_count(0)
    expect(page.locator("#tree-modbus")).to_have_attribute("data-state", LOAD_TOLERANT)

    # A site without OPC UA (404): its entry goes, the others stay.
    page.route("**/api/v1/connect/opcua", not_found)
    page.locator("#tree-opcua").click()
    expect(page.locator("#tree-opcua")).to_be_hidden(timeout=10_000)
    expect(page.locator("#scope")).to_have_text("All equipment")
    expect(page.locator("#connectivity .node:visible .label")).to_have_text(
        ["Sparkplug B", "Modbus TCP"]
    )

    # Chromium logs the 503s and the 404 itself; nothing else went wrong.
    unexpected = [e for e in seen.errors if not re.search(r"status of (503|404)", e)]
    assert unexpected == [], unexpected
    assert seen.foreign(demo.port) == [], seen.foreign(demo.port)
    context.close()


# ---------------------------------------------------------------- alarms and commands

# Two rules on the run-out table's speed, added to the demo site: an operator's set-point
# command (real, through the API and Modbus) trips them, and they stay active while the table
# runs fast. The high one is also an alarm interlock of the set point (the template's
# `alarm_interlocks = ["roller_table"]`). The demo's own rules do not trip in the first minutes:
# the fence door (seed 0) first opens 162 s into the run.
OVERSPEED_RULES = """
[[alarm]]
signal = "roller_table.speed"
kind = "high"
limit = 8
deadband = 0.5
on_delay_s = 1
priority = "medium"
message = "Run-out table faster than the strip needs"

[[alarm]]
signal = "roller_table.speed"
kind = "high"
limit = 10
deadband = 0.5
on_delay_s = 1
priority = "high"
message = "Run-out table overspeed"
"""
MEDIUM = "roller_table.speed/high"
HIGH = "roller_table.speed/high#2"
ACK_COMMENT = "table speed trial agreed with the shift lead"


@pytest.fixture
def overspeed_demo(tmp_path: Path, free_port: int) -> Iterator[Server]:
    """The demo with OVERSPEED_RULES (FactoryProcess keeps a site file that is there)."""
    site = tmp_path / "factory5g-demo" / "site.toml"
    site.parent.mkdir(parents=True)
    site.write_text(steel_text() + OVERSPEED_RULES, encoding="utf-8")
    server = Server(tmp_path, free_port)
    try:
        yield server
    finally:
        server.stop()


def api_client(demo: Server, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{demo.port}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def new_token(admin: httpx.Client, role: str) -> str:
    r = admin.post("/tokens", json={"role": role, "name": f"console-{role}"})
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def command(client: httpx.Client, target: str, value: float, key: str) -> httpx.Response:
    body = {"target": target, "value": value, "deadline_ms": 10_000, "idempotency_key": key}
    return client.post("/commands", json=body)


def wait_connected(client: httpx.Client, adapter: str) -> None:
    """Until the demo's `adapter` client reached its simulated device (a write needs it)."""

    def connected() -> bool:
        r = client.get(f"/connect/{adapter}")
        return r.status_code == 200 and r.json()["connected"] is True

    wait_until_sync(connected, 60, f"the {adapter} client connected")


def alarm_of(client: httpx.Client, alarm_id: str) -> dict[str, Any]:
    r = client.get("/alarms")
    assert r.status_code == 200, r.text
    [alarm] = [a for a in r.json()["alarms"] if a["id"] == alarm_id]
    return alarm


def alarm_row(page: Page, alarm_id: str) -> Locator:
    return page.locator(f'#alarms-body tr[data-alarm="{alarm_id}"]')


def command_row(page: Page, command_id: str) -> Locator:
    return page.locator(f'#commands-body tr[data-command="{command_id}"]')


def audit_fact(page: Page, name: str) -> Locator:
    return page.locator(f'#audit-facts [data-fact="{name}"]')


def requests_to(seen: Recorder, path: str) -> int:
    return sum(1 for u in seen.urls if urlsplit(u).path == path)


BACKGROUND = """(e) => getComputedStyle(e).backgroundColor"""


@pytest.mark.timeout(300)
def test_console_alarms_live_acknowledge_shelve_by_role(
    overspeed_demo: Server, browser: Browser, tmp_path: Path
) -> None:
    demo = overspeed_demo
    _, admin_token = console_url(demo)
    base = f"http://127.0.0.1:{demo.port}/"
    with api_client(demo, admin_token) as admin:
        tokens = {role: new_token(admin, role) for role in ("viewer", "operator", "engineer")}
    operator = api_client(demo, tokens["operator"])
    admin = api_client(demo, admin_token)
    try:
        context, page, seen = open_console(browser, f"{base}#token={tokens['operator']}")
        expect(page.locator("#user-role")).to_have_text("operator")
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")

        # Nothing is wrong yet: an empty summary, no badge, no alarm in the last 10 minutes.
        page.locator("#tree-alarms").click()
        expect(page.locator("#tree-alarms")).to_have_attribute("data-selected", "true")
        expect(page.locator("#scope")).to_have_text("Alarms")
        expect(page.locator("#alarms-empty")).to_have_text(
            "No alarm is active, unacknowledged or shelved."
        )
        expect(page.locator("#alarm-badge")).to_be_hidden()
        expect(page.locator("#alarm-flood-n")).to_have_text("0")
        expect(page.locator("#alarm-flood")).to_have_attribute("data-flood", "false")

        # The operator runs the table fast (through the API, as an HMI or a script would).
        wait_connected(admin, "modbus")
        r = command(operator, "roller_table.speed_setpoint", 12, "table-fast")
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "confirmed"

        # Both alarms arrive live, highest priority first, with their state, limit and value.
        high, medium = alarm_row(page, HIGH), alarm_row(page, MEDIUM)
        for row in (high, medium):
            expect(row).to_have_attribute("data-state", "unacknowledged_active", timeout=30_000)
        rows = page.locator("#alarms-body tr")
        assert rows.evaluate_all("rs => rs.map(r => r.dataset.alarm)") == [HIGH, MEDIUM]
        expect(page.locator("#alarms-empty")).to_be_hidden()
        for row, priority, message, limit in (
            (high, "high", "Run-out table overspeed", 10),
            (medium, "medium", "Run-out table faster than the strip needs", 8),
        ):
            expect(row.locator(".prio")).to_have_text(priority)
            expect(row.locator(".astate")).to_have_text("unacknowledged active")
            expect(row.locator(".eq")).to_have_text("Run-out roller table")
            expect(row.locator(".path")).to_have_text("roller_table.speed")
            expect(row.locator(".msg")).to_have_text(message)
            expect(row.locator(".limit")).to_have_text(f"high limit {limit} m/s")
            value = row.locator(".value").inner_text()
            assert re.fullmatch(r"\d+\.\d+ m/s", value), value
            assert float(value.split()[0]) > limit, value
            expect(row.locator('[data-col="raised"]')).to_have_text(re.compile(r"^(<1|\d+) s ago$"))
            expect(row.locator(".now")).to_have_text(re.compile(r"^now \d+\.\d+ m/s$"))
        # Priority is a word and a colour, and the colours differ.
        assert high.locator(".prio").evaluate(BACKGROUND) != medium.locator(".prio").evaluate(
            BACKGROUND
        )
        badge = page.locator("#alarm-badge")
        expect(badge).to_have_text("2")
        expect(badge).to_have_attribute("data-priority", "high")
        expect(badge).to_have_attribute(
            "title", "2 unacknowledged active alarms, highest priority high"
        )
        expect(page.locator("#alarm-flood-n")).to_have_text("2")
        expect(page.locator("#alarm-flood")).to_have_attribute("data-flood", "false")
        expect(page.locator("#scope-count")).to_have_text("2 active · 2 unacknowledged · 0 shelved")
        # The WebSocket brought them: only an alarm event asks for the flood figure, and the
        # screen reader heard of them.
        assert requests_to(seen, "/api/v1/alarms/flood") >= 1, seen.urls
        expect(page.locator("#alarms-announce")).to_have_text(
            re.compile(
                r"^New (high|medium) priority alarm: Run-out table .* \(roller_table\.speed\)$"
            )
        )
        page.screenshot(path=tmp_path / "console-alarms.png")

        # A viewer sees the same alarms, read only: every action disabled, saying which role.
        viewer_context, other, other_seen = open_console(
            browser, f"{base}#token={tokens['viewer']}"
        )
        expect(other.locator("#user-role")).to_have_text("viewer")
        other.locator("#tree-alarms").click()
        seen_high = alarm_row(other, HIGH)
        expect(seen_high).to_have_attribute("data-state", "unacknowledged_active")
        ack_needs = re.compile(r"^Acknowledging alarms needs the operator role .*viewer\)$")
        expect(seen_high.locator("button.acknowledge")).to_be_disabled()
        expect(seen_high.locator("button.acknowledge")).to_have_attribute("title", ack_needs)
        expect(seen_high.locator("input.pick")).to_be_disabled()
        expect(seen_high.locator("button.shelve")).to_be_disabled()
        expect(seen_high.locator("button.shelve")).to_have_attribute(
            "title", re.compile(r"^Shelving alarms needs the engineer role")
        )
        expect(other.locator("#alarms-ack")).to_be_disabled()
        expect(other.locator("#alarms-ack")).to_have_attribute("title", ack_needs)
        expect(other.locator("#alarms-hint")).to_have_text(
            "Read only: acknowledging needs an operator."
        )
        expect(other.locator("#alarm-badge")).to_have_text("2")
        other.screenshot(path=tmp_path / "console-alarms-viewer.png")

        # The operator may acknowledge (not shelve): both at once, with a comment.
        expect(high.locator("button.shelve")).to_be_disabled()
        expect(high.locator("button.shelve")).to_have_attribute(
            "title", re.compile(r"^Shelving alarms needs the engineer role .*operator\)$")
        )
        expect(page.locator("#alarms-ack")).to_be_disabled()
        page.locator("#alarms-select").check()
        expect(page.locator("#alarms-ack")).to_have_text("Acknowledge selected (2)…")
        page.locator("#alarms-ack").click()
        dialog = page.locator("#alarm-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#alarm-dialog-title")).to_have_text("Acknowledge 2 alarms")
        expect(page.locator("#alarm-dialog-list li .mono")).to_have_text([HIGH, MEDIUM])
        expect(page.locator("#alarm-duration-field")).to_be_hidden()
        expect(page.locator("#alarm-comment")).to_be_focused()
        page.locator("#alarm-comment").fill(ACK_COMMENT)
        page.locator("#alarm-submit").click()
        expect(dialog).to_be_hidden()
        for row in (high, medium):
            expect(row).to_have_attribute("data-state", "acknowledged_active")
            expect(row.locator(".astate")).to_have_text("acknowledged active")
            expect(row.locator(".note")).to_have_text("by console-operator")
            expect(row.locator(".note")).to_have_attribute("title", f"“{ACK_COMMENT}”")
            expect(row.locator("button.acknowledge")).to_be_hidden()
        expect(badge).to_be_hidden()
        expect(page.locator("#alarms-ack")).to_have_text("Acknowledge selected…")
        # ... and live in the viewer's console too.
        expect(seen_high).to_have_attribute("data-state", "acknowledged_active")
        expect(other.locator("#alarm-badge")).to_be_hidden()
        for alarm_id in (HIGH, MEDIUM):
            stored = alarm_of(admin, alarm_id)
            assert stored["state"] == "acknowledged_active", stored
            assert stored["acknowledged_by"] == "console-operator", stored
            assert stored["ack_comment"] == ACK_COMMENT, stored
        page.screenshot(path=tmp_path / "console-alarms-acknowledged.png")

        # Acknowledged is not cleared: the high alarm still holds the set point's alarm interlock,
        # and the command log says so.
        refused = command(operator, "roller_table.speed_setpoint", 5, "table-back")
        assert refused.status_code == 409, refused.text
        assert refused.json()["reason_code"] == "alarm_interlock"
        page.locator("#tree-commands").click()
        row = command_row(page, refused.json()["command"]["id"])
        expect(row.locator(".cstate")).to_have_text("rejected (alarm interlock)")
        expect(row.locator(".reason")).to_have_text(refused.json()["detail"])
        expect(row.locator(".reason")).to_contain_text(HIGH)

        # An engineer shelves the high alarm, with a reason (required) and an expiry.
        other.goto(f"{base}#token={tokens['engineer']}")
        expect(other.locator("#user-role")).to_have_text("engineer")
        other.locator("#tree-alarms").click()
        expect(seen_high).to_have_attribute("data-state", "acknowledged_active")
        seen_high.locator("button.shelve").click()
        shelf = other.locator("#alarm-dialog")
        expect(other.locator("#alarm-dialog-title")).to_have_text("Shelve an alarm")
        expect(other.locator("#alarm-comment-need")).to_have_text(
            "(required: why it may be suppressed)"
        )
        other.locator("#alarm-duration").select_option("1800")
        other.locator("#alarm-submit").click()
        expect(shelf).to_be_visible()  # no reason given: the form does not go
        expect(other.locator("#alarm-comment:invalid")).to_have_count(1)
        other.locator("#alarm-comment").fill("speed trial, watched on site")
        other.locator("#alarm-submit").click()
        expect(shelf).to_be_hidden()
        expect(seen_high).to_have_attribute("data-state", "shelved")
        expect(seen_high.locator(".note")).to_have_text(re.compile(rf"^until {CLOCK}$"))
        page.locator("#tree-alarms").click()  # the operator's console follows, live
        expect(high).to_have_attribute("data-state", "shelved")
        expect(high.locator(".astate")).to_have_text("shelved")
        stored = alarm_of(admin, HIGH)
        assert stored["state"] == "shelved", stored
        assert stored["shelved_until"] - stored["since"] == 1800 * 10**9, stored

        # Someone else unshelves it while this engineer's dialog is open: the API refuses the
        # second unshelve, and the console says why in the API's own words.
        seen_high.locator("button.unshelve").click()
        expect(other.locator("#alarm-dialog-title")).to_have_text("Unshelve an alarm")
        r = admin.post("/alarms/unshelve", json={"alarm": HIGH, "comment": "trial over"})
        assert r.status_code == 200, r.text
        expect(seen_high).to_have_attribute("data-state", "unacknowledged_active")
        other.locator("#alarm-submit").click()
        expect(other.locator("#alarm-dialog-error")).to_have_text(
            f"Unshelving refused (HTTP 409): cannot unshelve alarm '{HIGH}': "
            "it is unacknowledged_active"
        )
        expect(shelf).to_be_visible()
        other.screenshot(path=tmp_path / "console-alarms-refused.png")
        other.locator("#alarm-cancel").click()
        expect(shelf).to_be_hidden()
        # Still active when unshelved: annunciated again.
        expect(other.locator("#alarm-badge")).to_have_text("1")
        expect(other.locator("#alarm-flood-n")).to_have_text("3")

        assert seen.errors == [], seen.errors
        # The refused unshelve is Chromium's own log line.
        unexpected = [e for e in other_seen.errors if "status of 409" not in e]
        assert unexpected == [], unexpected
        for s in (seen, other_seen):
            assert s.foreign(demo.port) == [], s.foreign(demo.port)
        viewer_context.close()
        context.close()
    finally:
        operator.close()
        admin.close()


def test_console_shows_commands_live_and_the_audit_chain(
    demo: Server, browser: Browser, tmp_path: Path
) -> None:
    url, admin_token = console_url(demo)
    with api_client(demo, admin_token) as admin:
        operator_token = new_token(admin, "operator")
    operator = api_client(demo, operator_token)
    admin = api_client(demo, admin_token)
    try:
        context, page, seen = open_console(browser, url)
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")

        # No command yet; an empty audit log is a valid chain.
        page.locator("#tree-commands").click()
        expect(page.locator("#scope")).to_have_text("Commands")
        expect(page.locator("#commands-empty")).to_have_text("No command has been sent yet.")
        chain = page.locator("#audit-chain")
        expect(chain).to_have_attribute("data-state", "ok")
        expect(chain.locator(".label")).to_have_text("chain ok")
        expect(audit_fact(page, "entries verified")).to_have_text("0")
        expect(audit_fact(page, "head")).to_have_text("empty log")
        lists_before = requests_to(seen, "/api/v1/commands")

        # An operator trims stand F1's speed through the API: the row appears, confirmed.
        wait_connected(admin, "opcua")
        r = command(operator, "f1.speed_trim", 1.5, "trim-up")
        assert r.status_code == 200, r.text
        trim = r.json()
        assert trim["state"] == "confirmed"
        row = command_row(page, trim["id"])
        expect(row).to_have_attribute("data-state", "confirmed")
        expect(row.locator(".cstate")).to_have_text("confirmed")
        expect(row.locator(".reason")).to_have_text("")
        expect(row.locator('[data-col="user"] .name')).to_have_text("console-operator")
        expect(row.locator('[data-col="user"] .tag')).to_have_text("operator")
        expect(row.locator('[data-col="target"] .mono')).to_have_text("f1.speed_trim")
        expect(row.locator('[data-col="value"]')).to_have_text("1.5 %")
        expect(row.locator('[data-col="latency"]')).to_have_text(re.compile(r"^\d+(\.\d)? ms$"))
        expect(row.locator('[data-col="time"]')).to_have_text(re.compile(r"^(<1|\d+) s ago$"))
        expect(row.locator('[data-col="state"]')).to_have_attribute(
            "title", f"device: {trim['result']}"
        )
        # Live from the WebSocket: the console did not ask for the list again.
        assert requests_to(seen, "/api/v1/commands") == lists_before, seen.urls

        # The audit panel re-verified the chain after the command: accepted + confirmed.
        expect(audit_fact(page, "entries verified")).to_have_text("2")
        expect(audit_fact(page, "head")).to_have_text("#2")
        head = admin.get("/audit/head").json()
        expect(audit_fact(page, "head hash")).to_have_text(head["hash"])
        expect(chain.locator(".label")).to_have_text("chain ok")
        expect(page.locator("#audit-bad")).to_be_hidden()

        # A value out of range is rejected, with the reason, above the older command.
        r = command(operator, "f1.speed_trim", 9, "trim-too-far")
        assert r.status_code == 422, r.text
        bad = r.json()
        assert bad["reason_code"] == "out_of_range"
        refused = command_row(page, bad["command"]["id"])
        expect(refused.locator(".cstate")).to_have_text("rejected (out of range)")
        expect(refused.locator(".reason")).to_have_text(bad["detail"])
        expect(refused.locator('[data-col="value"]')).to_have_text("9 %")
        assert page.locator("#commands-body tr").evaluate_all(
            "rs => rs.map(r => r.dataset.command)"
        ) == [bad["command"]["id"], trim["id"]]
        expect(page.locator("#scope-count")).to_have_text("2 recent commands · 1 not confirmed")
        entries = admin.get("/audit/verify").json()["entries"]
        assert entries > 2
        expect(audit_fact(page, "entries verified")).to_have_text(str(entries))
        page.screenshot(path=tmp_path / "console-commands.png")

        # Someone with access to the file rewrites history: the next verification names the
        # first entry that no longer matches its hash.
        db = sqlite3.connect(demo.cwd / "factory5g-demo" / "data" / "control.sqlite", timeout=30)
        try:
            with db:
                db.execute("DROP TRIGGER audit_no_update")
                db.execute("UPDATE audit SET payload = '5' WHERE seq = 1")
        finally:
            db.close()
        page.locator("#audit-verify").click()
        expect(chain).to_have_attribute("data-state", "broken")
        expect(chain.locator(".label")).to_have_text("chain broken")
        expect(page.locator("#audit-bad")).to_have_text(
            "First bad entry: #1 — content does not match its hash. Nothing from it on can be "
            "trusted."
        )
        page.screenshot(path=tmp_path / "console-audit-broken.png")

        assert seen.errors == [], seen.errors
        assert seen.foreign(demo.port) == [], seen.foreign(demo.port)
        context.close()
    finally:
        operator.close()
        admin.close()
