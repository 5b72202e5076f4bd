"""axe-core for the browser tests: a pinned version from the npm registry, fetched once with
`npm pack` into the pytest cache (never from a CDN), injected into a page, its findings sorted.

`.ci/run` makes sure npm is there; without npm (or the registry) the accessibility tests skip and
say why, unless SEATMAP_REQUIRE_BROWSER=1, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Final

from playwright.async_api import Page

AXE_VERSION: Final = "4.10.3"
FAILING: Final = ("serious", "critical")


def fetch_axe(cache: Path) -> Path:
    """axe.min.js of AXE_VERSION under `cache`, packed from the npm registry the first time."""
    target = cache / f"axe-core-{AXE_VERSION}.min.js"
    if target.exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed (apt-get install -y npm)")
    with tempfile.TemporaryDirectory(prefix="axe-") as tmp:
        subprocess.run(
            [npm, "pack", f"axe-core@{AXE_VERSION}", "--pack-destination", tmp, "--silent"],
            check=True, cwd=tmp, capture_output=True, timeout=180,
        )  # fmt: skip
        (tarball,) = Path(tmp).glob("axe-core-*.tgz")
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/axe.min.js")
            assert member is not None
            cache.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(f".{os.getpid()}.part")  # test workers may race here
            partial.write_bytes(member.read())
            partial.replace(target)
    return target


async def audit(page: Page, script: Path, *, context: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Run axe on the page as it is now (WCAG 2.x A/AA and best practices): violations by impact."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(script))
    results: dict[str, Any] = await page.evaluate(
        """async (context) => axe.run(context ? document.querySelector(context) : document, {
             runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa",
                                            "best-practice"]},
             // Experimental in axe 4.x, and the one a voice-control user trips over (WCAG 2.5.3).
             rules: {"label-content-name-mismatch": {enabled: true}},
             resultTypes: ["violations"],
           })""",
        context,
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for violation in results["violations"]:
        found.setdefault(violation["impact"] or "minor", []).append(
            {
                "id": violation["id"],
                "help": violation["help"],
                "nodes": [" ".join(node["target"]) for node in violation["nodes"][:5]],
            }
        )
    return found


def summary(name: str, found: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for impact in ("critical", "serious", "moderate", "minor"):
        for v in found.get(impact, []):
            lines.append(f"  {name}: {impact} {v['id']} ({v['help']}) at {', '.join(v['nodes'])}")
    return "\n".join(lines)
