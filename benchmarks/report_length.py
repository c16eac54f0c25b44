"""How long report.html is: its height at 1400 px wide, where the verdict and the first key
finding end (the first screen is 900 px), and its pages printed on A4 by headless Chromium.

    python benchmarks/report_length.py demo_out/report.html [more.html ...]

Issue 23 (docs/reports.md, "Length"): the demo was 26,026 px and 30 pages before, 11,211 px
and 12 pages after. Needs Debian's chromium (`make browser`).
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

logger = logging.getLogger("report_length")

_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking")
_WRAPPER = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" src="report.html" style="width:1400px;height:900px;border:0"></iframe><pre id="out"></pre>
<script>
document.getElementById("f").addEventListener("load", function () {
  var d = this.contentDocument;
  function bottom(s) { var e = d.querySelector(s); return e ? Math.round(e.getBoundingClientRect().bottom) : null; }
  document.getElementById("out").textContent = JSON.stringify({height: d.documentElement.scrollHeight,
    verdict_bottom: bottom("#verdict"), first_finding_bottom: bottom("#key-findings li")});
});
</script></body></html>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("chromium is not installed: `make browser` installs it")
    return found


def _run(work: Path, *args: str) -> str:
    profile = work / f"profile-{len(list(work.glob('profile-*')))}"
    done = subprocess.run(
        [_chromium(), *_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return done.stdout


def measure(report: Path) -> dict[str, object]:
    """Height and first-screen positions at 1400 x 900, and A4 pages."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(report, work / "report.html")
        (work / "wrapper.html").write_text(_WRAPPER, encoding="utf-8")
        dom = _run(work, "--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom",
                   (work / "wrapper.html").as_uri())  # fmt: skip
        found = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
        facts = json.loads(html.unescape(found.group(1))) if found else {}
        pdf = work / "report.pdf"
        _run(work, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", (work / "report.html").as_uri())
        pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf.read_bytes())) if pdf.exists() else None
    return {"report": str(report), **facts, "a4_pages": pages}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    for report in parser.parse_args().reports:
        logger.info("%s", json.dumps(measure(report)))


if __name__ == "__main__":
    main()
