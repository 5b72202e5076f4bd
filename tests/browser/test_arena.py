"""The 5,000-seat arena on a throttled phone: how fast it opens, whether 100 changes/s drop frames.

A measurement with loose bounds rather than a timing unit test: it prints its figures (run with
`-s`), and fails only when the map is plainly too slow (bounds scaled by the timeout factor).
Chromium's CPU is throttled 4x through the DevTools protocol, at 390x844 with touch.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, Final

import pytest
from playwright.async_api import expect

from seatmap.accounts.auth import Principal
from seatmap.runtime import Runtime
from tests.browser.pages import Browsers, screenshot
from tests.support import TIMEOUT_FACTOR, Server, make_screening

# A timing measurement: alone, after the parallel pass.
pytestmark = pytest.mark.serial

ARENA: Final = ["S" * 20 + "_" + "S" * 60 + "_" + "S" * 20] * 50  # 5,000 seats
RATE: Final = 100  # seat changes a second
SECONDS: Final = 3

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
  if (window.__probe.ready === null && seen()) window.__probe.ready = now;
  if (window.__probe.recording) window.__probe.frames.push(now);
  requestAnimationFrame(tick);
};
requestAnimationFrame(tick);
"""


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


async def churn(rt: Runtime, screening: int, labels: list[str]) -> int:
    """RATE seat changes a second for SECONDS: holds of one seat each, released 0.5 s later."""
    made: list[tuple[Principal, str]] = []
    changes = 0
    start = time.monotonic()
    for i in range(RATE * SECONDS // 2):
        who = Principal(user_id=10_000 + i, role="customer", jti=f"j{i}", expires_at=2**40)
        hold = await rt.holds.create(who, screening, [labels[(i * 37) % len(labels)]])
        made.append((who, hold.token))
        changes += 1
        if len(made) > RATE // 4:
            old, token = made.pop(0)
            await rt.holds.release(old, token)
            changes += 1
        await asyncio.sleep(max(0.0, start + (i + 1) * 2 / RATE - time.monotonic()))
    return changes


async def test_the_arena_opens_and_stays_smooth_on_a_throttled_phone(
    browsers: Browsers, server: Server, rt: Runtime
) -> None:
    """A 5,000-seat arena at 390x844, CPU 4x slower, opens and keeps drawing while 100 seats/s change."""
    screening = await make_screening(rt, ARENA, strand_rule=False)
    layout = await rt.holds.inventory.layout(screening)
    labels = sorted(layout.labels)
    page = await browsers.page(server.http, width=390, height=844, is_mobile=True, has_touch=True)
    await page.add_init_script(PROBE % len(labels))
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Emulation.setCPUThrottlingRate", {"rate": 4})
    await page.goto(f"/#/screening/{screening}")
    await expect(page.locator(".conn")).to_have_class("conn conn-live", timeout=30_000)
    await page.wait_for_function("() => window.__probe.ready !== null")
    timing: dict[str, Any] = await page.evaluate(
        """() => {
          const nav = performance.getEntriesByType('navigation')[0];
          const dom = Math.round(nav.domContentLoadedEventEnd);
          const api = performance.getEntriesByType('resource')
            .filter((r) => r.name.includes('/api/screenings/'))
            .map((r) => [Math.round(r.startTime), Math.round(r.responseEnd), r.transferSize]);
          return {ready_ms: Math.round(window.__probe.ready), dom_ms: dom, api, long: window.__probe.long};
        }"""
    )
    await page.evaluate("() => { window.__probe.recording = true; }")
    await page.wait_for_timeout(SECONDS * 1000)
    idle = frame_figures(await page.evaluate("() => window.__probe.frames.splice(0)"))
    changes = await churn(rt, screening, labels)
    await page.wait_for_timeout(500)
    frames: list[float] = await page.evaluate(
        "() => { window.__probe.recording = false; return window.__probe.frames; }"
    )
    figures = frame_figures(frames)
    print(
        f"\narena 5000 seats, 390x844, CPU x4: {timing} | {changes} changes in {SECONDS} s"
        f" | frames idle {idle} churn {figures}"
    )
    await screenshot(page, "arena-phone-throttled", full_page=False)
    # Bounds for a loaded 2-core machine (the figures above are the measurement): the SVG map
    # this replaced took 14 s to open and drew 4 frames a second while seats changed.
    assert timing["ready_ms"] < 2500 * TIMEOUT_FACTOR, timing
    assert figures["frames"] >= 0.5 * idle["frames"], (idle, figures)
    # The canvas is one tab stop; Enter on the seat in focus chooses it (here: asks to log in).
    await page.locator("canvas.seatcanvas").focus()
    await page.keyboard.press("ArrowRight")
    await expect(page.locator(".seat-info")).to_contain_text("Row Z seat 52, standard, 50,000 IDR")
    await page.keyboard.press("Enter")
    await expect(page.locator(".login-dialog")).to_be_visible()
