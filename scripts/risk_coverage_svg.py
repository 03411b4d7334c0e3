#!/usr/bin/env python3
"""Risk-coverage curves of `kvrag eval --json` as an SVG picture (for the README; not product).

Usage: scripts/risk_coverage_svg.py SUMMARY.json OUT.svg [MODE ...]

Reads each mode's "hallucination" -> "risk_coverage" points ({"coverage", "em"}: answering only
the answers whose groundedness score is at least a threshold) and draws exact match of the answered
against coverage, one line per mode. Standard library only.
"""
import json
import sys

W, H, L, R, T, B = 560, 380, 60, 150, 30, 50  # size and margins (px)
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    summary = json.load(open(sys.argv[1]))
    modes = sys.argv[3:] or [m for m, v in summary.items()
                             if isinstance(v, dict) and "hallucination" in v]
    pw, ph = W - L - R, H - T - B

    def x(c):
        return L + c * pw

    def y(e):
        return T + (1 - e) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    for i in range(11):  # grid and ticks every 0.1
        v = i / 10
        out.append(f'<line x1="{x(v):.1f}" y1="{T}" x2="{x(v):.1f}" y2="{T + ph}" '
                   f'stroke="#eee"/>')
        out.append(f'<line x1="{L}" y1="{y(v):.1f}" x2="{L + pw}" y2="{y(v):.1f}" '
                   f'stroke="#eee"/>')
        if i % 2 == 0:
            out.append(f'<text x="{x(v):.1f}" y="{T + ph + 16}" text-anchor="middle">{v:.1f}'
                       '</text>')
            out.append(f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.1f}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{L + pw / 2}" y="{H - 10}" text-anchor="middle">coverage (share '
               'answered, highest groundedness score first)</text>')
    out.append(f'<text transform="translate(16,{T + ph / 2}) rotate(-90)" '
               'text-anchor="middle">exact match of the answered</text>')
    for k, mode in enumerate(modes):
        pts = summary[mode]["hallucination"]["risk_coverage"]
        color = COLORS[k % len(COLORS)]
        path = " ".join(f"{x(p['coverage']):.1f},{y(p['em']):.1f}" for p in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for p in pts:
            out.append(f'<circle cx="{x(p["coverage"]):.1f}" cy="{y(p["em"]):.1f}" r="2.5" '
                       f'fill="{color}"/>')
        ly = T + 14 + 18 * k
        auroc = summary[mode]["hallucination"]["auroc_wrong"]["score"]
        label = mode + (f" (AUROC {auroc:.2f})" if isinstance(auroc, (int, float)) else "")
        out.append(f'<line x1="{L + pw + 10}" y1="{ly - 4}" x2="{L + pw + 28}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{L + pw + 32}" y="{ly}">{label}</text>')
    out.append("</svg>")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
