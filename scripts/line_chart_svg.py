"""A line chart as SVG text, shared by the README's picture scripts (risk_coverage_svg.py,
curves_svg.py). Standard library only; not product.

line_chart(series, x_range, y_range, x_ticks, y_ticks, x_label, y_label, legend_width) -> str
  series:  [(label, [(x, y), ...])], one coloured line with dots and a legend entry each
  x_ticks, y_ticks: [(value, text or None)]: a grid line at each value, labelled where text is
"""

W, H, L, T, B = 560, 380, 60, 30, 50  # size and margins (px); the right margin holds the legend
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def line_chart(series, x_range, y_range, x_ticks, y_ticks, x_label, y_label, legend_width):
    pw, ph = W - L - legend_width, H - T - B
    (x0, x1), (y0, y1) = x_range, y_range

    def x(v):
        return L + (v - x0) / (x1 - x0) * pw

    def y(v):
        return T + (1 - (v - y0) / (y1 - y0)) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    for v, text in x_ticks:
        out.append(f'<line x1="{x(v):.1f}" y1="{T}" x2="{x(v):.1f}" y2="{T + ph}" '
                   f'stroke="#eee"/>')
        if text is not None:
            out.append(f'<text x="{x(v):.1f}" y="{T + ph + 16}" text-anchor="middle">{text}'
                       '</text>')
    for v, text in y_ticks:
        out.append(f'<line x1="{L}" y1="{y(v):.1f}" x2="{L + pw}" y2="{y(v):.1f}" '
                   f'stroke="#eee"/>')
        if text is not None:
            out.append(f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{text}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{L + pw / 2}" y="{H - 10}" text-anchor="middle">{x_label}</text>')
    out.append(f'<text transform="translate(16,{T + ph / 2}) rotate(-90)" '
               f'text-anchor="middle">{y_label}</text>')
    for k, (label, pts) in enumerate(series):
        color = COLORS[k % len(COLORS)]
        path = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for a, b in pts:
            out.append(f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="2.5" fill="{color}"/>')
        ly = T + 14 + 18 * k
        out.append(f'<line x1="{L + pw + 10}" y1="{ly - 4}" x2="{L + pw + 28}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{L + pw + 32}" y="{ly}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
