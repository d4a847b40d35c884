"""The report in a real browser (issue 13 item 6): headless Chromium lays the page out at 1400 x 900 and the
summary (banner, headline metrics, the facts table) is the first section and fits the first screen, with no
horizontal scrolling; a screenshot of that first screen shows the banner in its state's colour.

Needs Chromium (Debian's package: ``apt-get install chromium``; ``.ci/run`` should install it); skipped with the
reason where it is absent. The screenshot is left in the test's temporary folder for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from test_evaluate_validation import copy_run, evaluated_run, pristine_run
from tl_radiology.evaluation import write_report

WIDTH, HEIGHT = 1400, 900
BANNER_COLOURS = {"evaluated": (233, 247, 236), "sealed": (232, 241, 251)}  # .banner.<state> backgrounds


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium): the report's layout "
                "is not checked in a browser here")


def _run_chromium(browser: str, tmp_path, *arguments: str) -> subprocess.CompletedProcess:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
               "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
               f"--window-size={WIDTH},{HEIGHT}", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    return result


_PROBE = """<script>
window.addEventListener("load", function () {
  var box = function (el) { var r = el.getBoundingClientRect(); return {top: r.top, bottom: r.bottom}; };
  var summary = document.getElementById("summary");
  var cards = summary.querySelectorAll(".card");
  var layout = {
    sections: Array.prototype.map.call(document.querySelectorAll("section"), function (s) { return s.id; }),
    summary: box(summary),
    banner: box(summary.querySelector(".banner")),
    cards: cards.length, last_card: cards.length ? box(cards[cards.length - 1]) : null,
    facts: box(summary.querySelector("table.facts")),
    scroll_width: document.documentElement.scrollWidth,
    page_height: document.documentElement.scrollHeight
  };
  var out = document.createElement("pre");
  out.id = "layout"; out.textContent = JSON.stringify(layout);
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.parametrize("state", ["evaluated", "sealed"])
def test_the_summary_is_the_first_screen_in_a_real_browser(tmp_path_factory, tmp_path, state):
    browser = _chromium()
    source = evaluated_run(tmp_path_factory) if state == "evaluated" else pristine_run(tmp_path_factory)
    run = copy_run(source, tmp_path / "run")
    report = write_report(run)

    # Layout, measured by the browser: a copy of the page with a probe script (the report itself has no script).
    probe = report.parent / "probe.html"
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom = _run_chromium(browser, tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()).stdout
    probe.unlink()
    match = re.search(r'<pre id="layout">(.*?)</pre>', dom, re.S)
    assert match, "the browser did not run the layout probe"
    layout = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert layout["sections"][0] == "summary"
    assert 0 <= layout["summary"]["top"] < 150  # right under the title
    assert layout["banner"]["bottom"] <= HEIGHT and layout["cards"] >= 3
    assert layout["last_card"]["bottom"] <= HEIGHT  # every headline metric visible without scrolling
    assert layout["facts"]["bottom"] <= HEIGHT and layout["summary"]["bottom"] <= HEIGHT
    assert layout["scroll_width"] <= WIDTH  # no horizontal scrolling

    # What a reader sees first: the screenshot of the first screen shows the banner in its state's colour.
    shot = tmp_path / f"report_{state}.png"
    _run_chromium(browser, tmp_path, f"--screenshot={shot}", report.as_uri())
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert image.shape[:2] == (HEIGHT, WIDTH)
    colour = np.array(BANNER_COLOURS[state])
    banner_rows = np.where((np.abs(image - colour).sum(axis=2) <= 6).sum(axis=1) > WIDTH // 3)[0]
    assert len(banner_rows) >= 20 and banner_rows.min() < 250  # a wide banner near the top
    dark = (image.sum(axis=2) < 200).mean(axis=1)  # rows with text
    assert (dark[: HEIGHT // 2] > 0).sum() >= 50  # the first half-screen carries text, not a blank page
