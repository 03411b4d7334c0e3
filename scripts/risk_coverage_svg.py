#!/usr/bin/env python3
"""Risk-coverage curves of `kvrag eval --json` as an SVG picture (for the README; not product).

Usage: scripts/risk_coverage_svg.py SUMMARY.json OUT.svg [MODE ...]

Reads each mode's "hallucination" -> "risk_coverage" points ({"coverage", "em"}: answering only
the answers whose groundedness score is at least a threshold) and draws exact match of the answered
against coverage, one line per mode. Standard library only.
"""
import json
import sys

from line_chart_svg import line_chart


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    summary = json.load(open(sys.argv[1]))
    modes = sys.argv[3:] or [m for m, v in summary.items()
                             if isinstance(v, dict) and "hallucination" in v]
    series = []
    for mode in modes:
        h = summary[mode]["hallucination"]
        auroc = h["auroc_wrong"]["score"]
        label = mode + (f" (AUROC {auroc:.2f})" if isinstance(auroc, (int, float)) else "")
        series.append((label, [(p["coverage"], p["em"]) for p in h["risk_coverage"]]))
    ticks = [(i / 10, f"{i / 10:.1f}" if i % 2 == 0 else None) for i in range(11)]
    svg = line_chart(series, (0, 1), (0, 1), ticks, ticks,
                     "coverage (share answered, highest groundedness score first)",
                     "exact match of the answered", legend_width=150)
    with open(sys.argv[2], "w") as f:
        f.write(svg)


if __name__ == "__main__":
    main()
