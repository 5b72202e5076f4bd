"""The 5,000-seat arena on a throttled phone: how fast it opens, whether 100 changes/s drop frames.

A measurement with bounds rather than a timing unit test: it prints its figures (run with `-s`;
bench/README.md says what they mean). Chromium's CPU is throttled 4x through the DevTools
protocol, at 390x844 with touch. The page is opened three times, each in a fresh context (cold
browser cache), and the fastest open is held to the target, interactive in under a second,
times SEATMAP_TESTS_TIMEOUT_FACTOR (the suite's own measure of how much slower this machine
is; 1 by default, where the map before this one, at 1.1-1.3 s, fails). Nothing polls the page
while it opens (the probe says "ready" on the console), so measuring costs the page nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, Final

import pytest
from playwright.async_api import Page, expect

from seatmap.accounts.auth import Principal
from seatmap.runtime import Runtime
from tests.browser.pages import Browsers, screenshot
from tests.support import TIMEOUT_FACTOR, Server, make_screening

# A timing measurement: alone, after the parallel pass.
pytestmark = pytest.mark.serial

ARENA: Final = ["S" * 20 + "_" + "S" * 60 + "_" + "S" * 20] * 50  # 5,000 seats
RATE: Final = 100  # seat changes a second
SECONDS: Final = 3
TARGET_MS: Final = 1000  # the bound: open and interactive within a second
OPENS: Final = 3

# Before the app runs: note the first frame at which the whole map is drawn and live (a frame is
# only painted once the main thread is free: interactive), then every frame's time.
PROBE: Final = """
window.__probe = {ready: null, frames: [], long: []};
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    window.__probe.long.push([Math.round(e.startTime), Math.round(e.duration)]);
  }
}).observe({type: "longtask", buffered: true});
const seen = () => Number(document.querySelector('.map-box')?.dataset.drawn) >= %d
  && document.querySelector('.conn-live') !== null;
const tick = (now) => {
  if (window.__probe.ready === null && seen()) {
    window.__probe.ready = now;
    console.log("probe: ready");
  }
  if (window.__probe.recording) window.__probe.frames.push(now);
  requestAnimationFrame(tick);
};
requestAnimationFrame(tick);
"""

# Where the time of one open went: the layout request (started by index.html before the
# scripts), the marks the page sets (screening.js, seatcanvas.js, live.js), long tasks.
TIMING: Final = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const ms = (t) => Math.round(t);
  const layout = performance.getEntriesByType('resource').find((r) => r.name.includes('/api/screenings/'));
  const marks = Object.fromEntries(performance.getEntriesByType('mark')
    .filter((m) => m.name.startsWith('seatmap:')).map((m) => [m.name.slice(8), ms(m.startTime)]));
  return {
    ready_ms: ms(window.__probe.ready),
    html_ms: ms(nav.responseEnd),
    dom_ms: ms(nav.domContentLoadedEventEnd),
    layout_request: layout
      && [layout.startTime, layout.requestStart, layout.responseStart, layout.responseEnd].map(ms),
    layout_bytes: layout?.transferSize,
    marks,
    long_tasks: window.__probe.long,
  };
}"""


async def open_arena(
    browsers: Browsers, server: Server, screening: int, seats: int
) -> tuple[Page, dict[str, Any]]:
    """A fresh phone context opens the arena; the page and its figures once it is ready."""
    page = await browsers.page(server.http, width=390, height=844, is_mobile=True, has_touch=True)
    await page.add_init_script(PROBE % seats)
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Emulation.setCPUThrottlingRate", {"rate": 4})
    async with page.expect_console_message(lambda m: m.text == "probe: ready", timeout=30_000):
        await page.goto(f"/#/screening/{screening}")
    timing: dict[str, Any] = await page.evaluate(TIMING)
    return page, timing


def frame_figures(frames: list[float]) -> dict[str, float]:
    gaps = sorted(b - a for a, b in itertools.pairwise(frames))
    if not gaps:
        return {"frames": 0, "p50_ms": 0, "p95_ms": 0, "max_ms": 0, "dropped": 0}
    frame = gaps[len(gaps) // 2]  # the display's frame time as this browser runs it
    return {
        "frames": len(frames),
        "p50_ms": round(frame, 1),
        "p95_ms": round(gaps[int(len(gaps) * 0.95)], 1),
        "max_ms": round(gaps[-1], 1),
        # A gap of more than 1.5 frames lost at least one frame.
        "dropped": sum(round(g / frame) - 1 for g in gaps if g > 1.5 * frame),
    }


async def churn(rt: Runtime, screening: int, labels: list[str], attempt: int) -> list[tuple[Principal, str]]:
    """RATE seat changes a second for SECONDS, evenly spaced: one-seat holds by different
    buyers, and once a quarter second's worth is held, every other change releases the oldest.
    Returns the holds still made (released by the caller once the frames are read)."""
    made: list[tuple[Principal, str]] = []
    start = time.monotonic()
    for i in range(RATE * SECONDS):
        if len(made) >= RATE // 4 and i % 2:
            old, token = made.pop(0)
            await rt.holds.release(old, token)
        else:
            user = 10_000 + attempt * RATE * SECONDS + i
            who = Principal(user_id=user, role="customer", jti=f"j{user}", expires_at=2**40)
            hold = await rt.holds.create(who, screening, [labels[(i * 37) % len(labels)]])
            made.append((who, hold.token))
        await asyncio.sleep(max(0.0, start + (i + 1) / RATE - time.monotonic()))
    return made


async def frames_idle_and_churning(
    page: Page, rt: Runtime, screening: int, labels: list[str], attempt: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Frame figures of SECONDS idle, then of SECONDS of churn (and half a second after it)."""
    await page.evaluate("() => { window.__probe.frames = []; window.__probe.recording = true; }")
    await page.wait_for_timeout(SECONDS * 1000)
    idle = frame_figures(await page.evaluate("() => window.__probe.frames.splice(0)"))
    left = await churn(rt, screening, labels, attempt)
    await page.wait_for_timeout(500)
    frames: list[float] = await page.evaluate(
        "() => { window.__probe.recording = false; return window.__probe.frames; }"
    )
    for who, token in left:
        await rt.holds.release(who, token)
    return idle, frame_figures(frames)


def smooth(idle: dict[str, float], churning: dict[str, float]) -> bool:
    """Seat changes cost no more frames than the same page idle, allowing a few for the noise of
    a shared machine: a frame of 16.7 ms holds the two changes that arrive in it."""
    allowed = idle["dropped"] + max(6, 0.05 * idle["frames"])
    return churning["dropped"] <= allowed and churning["p95_ms"] < 2.5 * churning["p50_ms"]


async def test_the_arena_opens_and_stays_smooth_on_a_throttled_phone(
    browsers: Browsers, server: Server, rt: Runtime
) -> None:
    """A 5,000-seat arena at 390x844, CPU 4x slower, is live within a second and keeps drawing
    every frame while 100 seats a second change."""
    screening = await make_screening(rt, ARENA, strand_rule=False)
    layout = await rt.holds.inventory.layout(screening)
    labels = sorted(layout.labels)
    opens = []
    for _ in range(OPENS):
        page, timing = await open_arena(browsers, server, screening, len(labels))
        print(f"\narena open, 390x844, CPU x4: {timing}")
        opens.append(timing["ready_ms"])
        if len(opens) < OPENS:
            await page.context.close()
    # Twice at most, like the opens: a load spike of another process in one try is not the map.
    for attempt in range(2):
        idle, churning = await frames_idle_and_churning(page, rt, screening, labels, attempt)
        print(f"arena frames: idle {idle} | {RATE * SECONDS} changes in {SECONDS} s: {churning}")
        if smooth(idle, churning):
            break
    await screenshot(page, "arena-phone-throttled", full_page=False)
    assert min(opens) < TARGET_MS * TIMEOUT_FACTOR, opens
    assert smooth(idle, churning), (idle, churning)
    # The canvas is one tab stop; Enter on the seat in focus chooses it (here: asks to log in).
    await page.locator("canvas.seatcanvas").focus()
    await page.keyboard.press("ArrowRight")
    await expect(page.locator(".seat-info")).to_contain_text("Row Z seat 52, standard, 50,000 IDR")
    await page.keyboard.press("Enter")
    await expect(page.locator(".login-dialog")).to_be_visible()
