"""Inline SVG charts for the HTML report: no script, no font, no network.

Each function returns one ``<svg>`` element as a string, sized by its ``viewBox`` so the
page can scale it. Shaded bands mark when the gateway was under attack; dashed lines the
phases of the timeline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

__all__ = ["COLORS", "OUTCOME_COLORS", "hbar_chart", "line_chart", "stacked_chart"]

COLORS = {
    "legit-http": "#2563eb",
    "legit-browser": "#60a5fa",
    "legit": "#2563eb",
    "attack": "#dc2626",
    "adapter-openai": "#dc2626",
    "adapter-anthropic": "#f97316",
    "impersonator": "#a855f7",
    "native-solver": "#92400e",
    "headless-farm": "#e11d48",
    "stealth-farm": "#9f1239",
    "p50": "#2563eb",
    "p95": "#93c5fd",
}
OUTCOME_COLORS = {
    "allowed": "#16a34a",
    "degraded": "#84cc16",
    "challenged": "#eab308",
    "throttled": "#f97316",
    "blocked": "#dc2626",
    "spend_limit": "#7c3aed",
    "errors": "#6b7280",
    "not_sent": "#d1d5db",
}
W, H = 860, 260
ML, MR, MT, MB = 64, 16, 16, 56


def _nice(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _fmt(v: float, unit: str) -> str:
    if unit == "$":
        return f"${v:,.2f}" if v >= 0.1 else f"${v:.3g}"
    return f"{v:,.0f}" if v >= 10 or v == 0 else f"{v:.2g}"


def _frame(
    n: int, bucket_s: float, y_max: float, unit: str, y_label: str,
    shade: Sequence[tuple[float, float]], phases: Sequence[dict[str, object]],
) -> tuple[list[str], float, float]:  # fmt: skip
    """Axes, grid, shading and phase marks; returns (parts, x step, y scale)."""
    pw, ph = W - ML - MR, H - MT - MB
    step = pw / max(n, 1)
    scale = ph / y_max
    total_s = n * bucket_s
    parts = [f'<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="#ffffff" stroke="#d1d5db"/>']
    for a, b in shade:
        x1 = ML + min(max(a, 0), total_s) / bucket_s * step
        x2 = ML + min(max(b, 0), total_s) / bucket_s * step
        if x2 > x1:
            parts.append(f'<rect class="under-attack" x="{x1:.1f}" y="{MT}" width="{x2 - x1:.1f}" height="{ph}" '
                         'fill="#fee2e2" opacity="0.8"><title>under-attack mode</title></rect>')  # fmt: skip
    for i in range(5):
        v = y_max * i / 4
        y = MT + ph - v * scale
        parts.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#4b5563">'
                     f"{escape(_fmt(v, unit))}</text>")  # fmt: skip
    minutes = total_s / 60
    tick = next((t for t in (0.25, 0.5, 1, 2, 5, 10, 15, 30, 60) if minutes / t <= 12), 120)
    m = 0.0
    while m <= minutes + 1e-9:
        x = ML + m * 60 / bucket_s * step
        parts.append(f'<text x="{x:.1f}" y="{H - MB + 16}" text-anchor="middle" font-size="11" fill="#4b5563">'
                     f"{m:g}</text>")  # fmt: skip
        m += tick
    parts.append(f'<text x="{ML + pw / 2}" y="{H - MB + 32}" text-anchor="middle" font-size="11" fill="#4b5563">'
                 "minutes from the start</text>")  # fmt: skip
    parts.append(f'<text x="14" y="{MT + ph / 2}" font-size="11" fill="#4b5563" text-anchor="middle" '
                 f'transform="rotate(-90 14 {MT + ph / 2})">{escape(y_label)}</text>')  # fmt: skip
    for i, p in enumerate(phases):
        start = float(p["start_s"])  # type: ignore[arg-type]
        if start <= 0:
            continue
        x = ML + min(start, total_s) / bucket_s * step
        y = MT + 11 + (i % 2) * 12  # alternate rows: short phases sit close together
        name = escape(str(p["name"]))
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{MT}" y2="{MT + ph}" stroke="#9ca3af" '
                     'stroke-dasharray="3 3"/>')  # fmt: skip
        parts.append(f'<text x="{x + 3:.1f}" y="{y}" font-size="10" fill="#6b7280">{name}</text>')
    return parts, step, scale


def _legend(names: Sequence[str], colors: dict[str, str]) -> str:
    out, x = [], ML
    for name in names:
        out.append(f'<rect x="{x}" y="{H - 16}" width="10" height="10" fill="{colors.get(name, "#6b7280")}"/>')
        out.append(f'<text x="{x + 14}" y="{H - 7}" font-size="11" fill="#374151">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return "".join(out)


def stacked_chart(
    title: str,
    series: dict[str, Sequence[float]],
    bucket_s: float,
    *,
    unit: str = "",
    y_label: str = "",
    shade: Sequence[tuple[float, float]] = (),
    phases: Sequence[dict[str, object]] = (),
    bars: bool = False,
    colors: dict[str, str] | None = None,
) -> str:
    """Stacked areas (or bars) of several series over the run's time buckets."""
    colors = colors or COLORS
    names = [k for k, v in series.items() if any(v)] or list(series)
    n = max((len(v) for v in series.values()), default=0)
    totals = [sum(series[k][i] for k in names if i < len(series[k])) for i in range(n)]
    y_max = _nice(max(totals, default=0.0) * 1.05)
    parts, step, scale = _frame(n, bucket_s, y_max, unit, y_label, shade, phases)
    base = [0.0] * n
    for name in names:
        vals = [series[name][i] if i < len(series[name]) else 0.0 for i in range(n)]
        color = colors.get(name, "#6b7280")
        if bars:
            for i, v in enumerate(vals):
                if v <= 0:
                    continue
                x = ML + i * step + step * 0.1
                y = MT + (H - MT - MB) - (base[i] + v) * scale
                tip = f"{escape(name)}: {escape(_fmt(v, unit))}"
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" height="{v * scale:.1f}" '
                             f'fill="{color}"><title>{tip}</title></rect>')  # fmt: skip
        else:
            top = [(ML + (i + 0.5) * step, MT + (H - MT - MB) - (base[i] + vals[i]) * scale) for i in range(n)]
            bottom = [(ML + (i + 0.5) * step, MT + (H - MT - MB) - base[i] * scale) for i in reversed(range(n))]
            d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in top + bottom) + " Z"
            parts.append(f'<path d="{d}" fill="{color}" fill-opacity="0.75" stroke="{color}" stroke-width="1">'
                         f"<title>{escape(name)}</title></path>")  # fmt: skip
        base = [b + v for b, v in zip(base, vals, strict=True)]
    return _svg(title, parts, _legend(names, colors))


def line_chart(
    title: str,
    series: dict[str, Sequence[float | None]],
    bucket_s: float,
    *,
    unit: str = "",
    y_label: str = "",
    shade: Sequence[tuple[float, float]] = (),
    phases: Sequence[dict[str, object]] = (),
) -> str:
    n = max((len(v) for v in series.values()), default=0)
    values = [v for s in series.values() for v in s if v is not None]
    y_max = _nice(max(values, default=0.0) * 1.05)
    parts, step, scale = _frame(n, bucket_s, y_max, unit, y_label, shade, phases)
    for name, vals in series.items():
        points = [(ML + (i + 0.5) * step, MT + (H - MT - MB) - max(v, 0.0) * scale)
                  for i, v in enumerate(vals) if v is not None]  # fmt: skip
        if not points:
            continue
        d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in points)
        color = COLORS.get(name, "#6b7280")
        parts.append(
            f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2"><title>{escape(name)}</title></path>'
        )
    return _svg(title, parts, _legend(list(series), COLORS))


def hbar_chart(title: str, rows: Sequence[tuple[str, dict[str, int]]]) -> str:
    """One 100%-stacked horizontal bar per actor: how its calls ended."""
    bar_h, gap, left = 22, 10, 150
    height = MT + len(rows) * (bar_h + gap) + 40
    width = W - left - MR
    parts = []
    for j, (name, counts) in enumerate(rows):
        y = MT + j * (bar_h + gap)
        total = sum(counts.values())
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" font-size="12" fill="#111827">'
                     f"{escape(name)}</text>")  # fmt: skip
        x = float(left)
        for outcome, color in OUTCOME_COLORS.items():
            v = counts.get(outcome, 0)
            if not v or not total:
                continue
            w = width * v / total
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
                         f"<title>{escape(name)} {outcome}: {v} of {total}</title></rect>")  # fmt: skip
            if w > 34:
                parts.append(f'<text x="{x + w / 2:.1f}" y="{y + 15}" text-anchor="middle" font-size="11" '
                             f'fill="#ffffff">{100 * v / total:.0f}%</text>')  # fmt: skip
            x += w
    legend, lx = [], float(left)
    for outcome, color in OUTCOME_COLORS.items():
        legend.append(f'<rect x="{lx:.0f}" y="{height - 22}" width="10" height="10" fill="{color}"/>')
        legend.append(f'<text x="{lx + 14:.0f}" y="{height - 13}" font-size="11" fill="#374151">{outcome}</text>')
        lx += 24 + 7 * len(outcome)
    return (
        f'<svg class="chart" viewBox="0 0 {W} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(parts)}{"".join(legend)}</svg>'
    )


def _svg(title: str, parts: list[str], legend: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(parts)}{legend}</svg>'
    )
