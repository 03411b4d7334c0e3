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

W, H, L, R, T, B = 560, 380, 60, 190, 30, 50  # size and margins (px)
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


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
    pw, ph = W - L - R, H - T - B

    def x(e):
        return L + e / xmax * pw

    def y(v):
        return T + (1 - v / ymax) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    for e in range(xmax + 1):  # one tick per epoch
        out.append(f'<line x1="{x(e):.1f}" y1="{T}" x2="{x(e):.1f}" y2="{T + ph}" '
                   f'stroke="#eee"/>')
        out.append(f'<text x="{x(e):.1f}" y="{T + ph + 16}" text-anchor="middle">{e}</text>')
    steps = round(ymax * 10)
    for i in range(steps + 1):  # ticks every 0.1 (every 0.05 below 0.3)
        for v in ([i / 10] if ymax > 0.3 else [i / 10, i / 10 + 0.05]):
            if v > ymax + 1e-9:
                continue
            out.append(f'<line x1="{L}" y1="{y(v):.1f}" x2="{L + pw}" y2="{y(v):.1f}" '
                       f'stroke="#eee"/>')
            out.append(f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{L + pw / 2}" y="{H - 10}" text-anchor="middle">epoch '
               '(0 = before fine-tuning)</text>')
    out.append(f'<text transform="translate(16,{T + ph / 2}) rotate(-90)" '
               'text-anchor="middle">dev top-5 (gold passage)</text>')
    for k, (label, pts) in enumerate(runs):
        color = COLORS[k % len(COLORS)]
        path = " ".join(f"{x(e):.1f},{y(v):.1f}" for e, v in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for e, v in pts:
            out.append(f'<circle cx="{x(e):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}"/>')
        ly = T + 14 + 18 * k
        out.append(f'<line x1="{L + pw + 10}" y1="{ly - 4}" x2="{L + pw + 28}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{L + pw + 32}" y="{ly}">{label}</text>')
    out.append("</svg>")
    with open(sys.argv[1], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
