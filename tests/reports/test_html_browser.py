"""pareto.html in a real headless Chromium: no JavaScript errors, one rendered marker per completed trial.

A copy of the page gets two probes: one at the top of <head> that records every uncaught error, one at
the end that, after load, writes the error list, the rendered markers of the trials trace and its hover
texts into the DOM, which ``--dump-dom`` prints. A deliberately broken page proves errors are caught.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reports import build

ERROR_PROBE = ("<script>window.__errors=[];window.addEventListener('error',"
               "function(e){window.__errors.push(String(e.message))});</script>")
RESULT_PROBE = """<script>window.addEventListener('load', function () { setTimeout(function () {
  var gd = document.getElementById('pareto');
  var out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify({errors: window.__errors, plotly: typeof Plotly,
    points: gd ? gd.querySelectorAll('.scatterlayer .trace:first-child path.point').length : -1,
    hover: gd && gd.data ? gd.data[0].hovertext : []});
  document.body.appendChild(out); }, 500); });</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI"):
        pytest.fail("no chromium binary on PATH in CI: apt-get install -y chromium")
    pytest.skip("no chromium binary on PATH (apt-get install chromium); CI is unset, so skipping")


def probe(page: Path, tmp_path: Path) -> dict:
    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(page.read_text().replace("<head>", "<head>" + ERROR_PROBE, 1)
                      .replace("</body>", RESULT_PROBE + "</body>", 1))
    proc = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=10000", "--dump-dom",
         probed.as_uri()], capture_output=True, text=True, timeout=90)
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the probe never ran; chromium rc {proc.returncode}, stderr tail: {proc.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.slow
def test_pareto_html_renders_one_point_per_completed_trial(tiny_study, out_root, tmp_path):
    assert build.main(["--study", "tiny", "--out-root", str(out_root)]) == 0
    page = out_root / "tiny" / "pareto.html"
    result = probe(page, tmp_path)
    assert result["errors"] == [] and result["plotly"] == "object"
    completed = [t for t in tiny_study.trials if t.state.name == "COMPLETE"]
    assert result["points"] == len(completed) == 7
    assert all("experts/layer:" in h and "ranks/layer:" in h for h in result["hover"])
    assert any("experts/layer: 2-4-6-8" in h and "seed mola-2468" in h for h in result["hover"])



@pytest.mark.slow
def test_the_probe_catches_javascript_errors(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><head></head><body><script>notAFunction();</script></body></html>")
    result = probe(page, tmp_path)
    assert result["points"] == -1 and "notAFunction" in result["errors"][0]
