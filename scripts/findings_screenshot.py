"""The findings of a real record through the batch CLI, and a screenshot of the top of its HTML page.

    python -m scripts.findings_screenshot --model models/record-reference --record data/raw/mitdb/203 \
        --out-dir build/findings --screenshot reports/figures/findings.png

writes ``<record>.parquet`` (the beats), ``<record>.json`` (the findings) and ``<record>.html`` (the
page) into ``--out-dir``, then opens the page in Debian's headless chromium and saves the first
``--height`` pixels of it (the summary, the trends and the first strips).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ecgbeats.serving import batch
from scripts.viewer_screenshot import browser_missing, chromium


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/record-reference"))
    parser.add_argument("--record", type=Path, required=True, help="a WFDB record path (no extension)")
    parser.add_argument("--out-dir", type=Path, default=Path("build/findings"))
    parser.add_argument("--screenshot", type=Path, required=True)
    parser.add_argument("--height", type=int, default=2000)
    args = parser.parse_args(argv)
    name = args.record.name
    out = args.out_dir
    code = batch.main([
        str(args.record), str(out / f"{name}.parquet"), "--model", str(args.model), "--no-progress",
        "--findings", str(out / f"{name}.json"), "--report", str(out / f"{name}.html"),
    ])  # fmt: skip
    if code:
        return code
    reason = browser_missing()
    if reason:
        raise SystemExit(f"no screenshot: {reason}")
    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
    with chromium(1200, args.height) as driver:
        driver.get((out / f"{name}.html").resolve().as_uri())
        time.sleep(0.5)
        driver.save_screenshot(str(args.screenshot))
    print(f"{out / f'{name}.html'}; screenshot {args.screenshot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
