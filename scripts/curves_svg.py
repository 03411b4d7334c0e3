#!/usr/bin/env python3
"""Dev top-5 per epoch of `kvrag train-retriever` runs as an SVG picture (for the README; not
product).

Usage: scripts/curves_svg.py OUT.svg LABEL=RUN/train_report.json [LABEL=REPORT ...]

Reads each report's "initial_dev_top5" (drawn at epoch 0, before training) and the "dev_top5"
of its "epochs" entries (epoch 1, 2, ...) and draws one labelled line per report. The y axis runs
from 0 to the largest value rounded up to a tenth. Standard library only.
"""
import json
import math
import sys

from line_chart_svg import line_chart

def points(report):
    pts = []
    if report.get("initial_dev_top5", -1) >= 0:
        pts.append((0, report["initial_dev_top5"]))
    for e in report.get("epochs", []):
        if "dev_top5" in e:
            pts.append((e["epoch"] + 1, e["dev_top5"]))
    return pts


def main():
    if len(sys.argv) < 3 or any("=" not in a for a in sys.argv[2:]):
        sys.exit(__doc__)
    runs = []
    for arg in sys.argv[2:]:
        label, path = arg.split("=", 1)
        runs.append((label, points(json.load(open(path)))))
    xmax = max([p[0] for _, pts in runs for p in pts] + [1])
    ymax = max(0.1, math.ceil(max([p[1] for _, pts in runs for p in pts] + [0]) * 10) / 10)
    x_ticks = [(e, str(e)) for e in range(xmax + 1)]  # one tick per epoch
    y_ticks = []  # every 0.1 (every 0.05 up to 0.3)
    for i in range(round(ymax * 10) + 1):
        for v in ([i / 10] if ymax > 0.3 else [i / 10, i / 10 + 0.05]):
            if v <= ymax + 1e-9:
                y_ticks.append((v, f"{v:.2f}"))
    svg = line_chart(runs, (0, xmax), (0, ymax), x_ticks, y_ticks,
                     "epoch (0 = before fine-tuning)", "dev top-5 (gold passage)",
                     legend_width=190)
    with open(sys.argv[1], "w") as f:
        f.write(svg)


if __name__ == "__main__":
    main()
