"""The cohort summary in Markdown and HTML: how many cases finished, failed or wait; findings by kind and region;
regions that could not be assessed; the distributions of the key measures (``data/cohort.json``) as matplotlib
histograms (PNG files beside the Markdown, data URIs inside the HTML so it is one self-contained file); and the
failed cases with their errors."""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import atomic_write
from ..data import load_json
from ..errors import MissingDependencyError
from .outputs import write_text

SUMMARY_STEM = "cohort_summary"
PLOTS_DIR = "cohort_plots"
LISTED_AT_MOST = 200  # failed / waiting cases named in the summary; failures.csv holds every one


def require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("the cohort summary's plots need matplotlib: pip install "
                                     "'MedRegionCTLib[cohort]', or pass --no-plots.") from None
    return plt


def measure_series(scan) -> list[dict]:
    """Per key measure and split (right/left): the values measured and the number of cases without one."""
    out = []
    for m in load_json("cohort.json")["key_measures"]:
        entries = scan.measures.get(m["key"], [])
        splits = sorted({split for _, split, _ in entries}, key=lambda s: (s is None, str(s)))
        series = []
        for split in splits or [None]:
            values = np.array([v for _, s, v in entries if s == split and v is not None], dtype=float)
            missing = sum(1 for _, s, v in entries if s == split and v is None)
            series.append({"split": split, "values": values, "missing": missing})
        out.append({**m, "series": series})
    return out


def _stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"n": 0}
    p25, median, p75 = np.percentile(values, [25, 50, 75])
    return {"n": int(values.size), "mean": float(values.mean()), "sd": float(values.std(ddof=1)) if values.size > 1
            else None, "median": float(median), "p25": float(p25), "p75": float(p75), "min": float(values.min()),
            "max": float(values.max())}


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "–"
    digits = 3 if unit == "ratio" else 1
    return f"{value:.{digits}f}"


def _plot(measure: dict, plt) -> bytes | None:
    series = [s for s in measure["series"] if s["values"].size]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.0), dpi=100)
    everything = np.concatenate([s["values"] for s in series])
    bins = np.histogram_bin_edges(everything, bins=min(30, max(5, int(np.sqrt(everything.size)) + 1)))
    for s in series:
        label = f"{s['split'] or 'all'} (n={s['values'].size})"
        ax.hist(s["values"], bins=bins, alpha=0.6 if len(series) > 1 else 0.9, label=label)
    ax.set_xlabel(f"{measure['title']} ({measure['unit']})")
    ax.set_ylabel("cases" if measure["record"] == "clinical" else "findings")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _counts_table(scan) -> tuple[list[str], list[list]]:
    head = ["cases in the input folder", "finished", "failed", "being analysed", "not run yet", "unreadable"]
    listed = len(set(scan.cases) | {f["case"] for f in scan.failures} | set(scan.pending)
                 | {u["case"] for u in scan.unreadable})
    return head, [[listed, len(scan.cases), len(scan.failures), len(scan.in_progress),
                   len([p for p in scan.pending if p not in scan.in_progress]), len(scan.unreadable)]]


def _findings_table(scan) -> tuple[list[str], list[list]]:
    regions = sorted({region for _, region in scan.findings}, key=str)
    kinds = sorted({kind for kind, _ in scan.findings}, key=lambda k: (-len(scan.cases_with[k]), str(k)))
    head = ["finding", *[str(r) for r in regions], "all", "cases with one"]
    rows = []
    for kind in kinds:
        per = [scan.findings.get((kind, r), 0) for r in regions]
        rows.append([kind, *per, sum(per), len(scan.cases_with[kind])])
    return head, rows


def _status_table(scan) -> tuple[list[str], list[list]]:
    statuses = sorted({status for _, status in scan.region_status})
    regions = sorted({region for region, _ in scan.region_status})
    return ["region", *statuses], [[r, *[scan.region_status.get((r, s), 0) for s in statuses]] for r in regions]


def _measure_table(measure: dict) -> tuple[list[str], list[list]]:
    unit = measure["unit"]
    head = ["series", "n", "not measured", "mean", "SD", "median", "IQR", "min", "max"]
    rows = []
    for s in measure["series"]:
        st = _stats(s["values"])
        iqr = f"{_fmt(st.get('p25'), unit)}–{_fmt(st.get('p75'), unit)}" if st["n"] else "–"
        rows.append([s["split"] or "all", st["n"], s["missing"], _fmt(st.get("mean"), unit),
                     _fmt(st.get("sd"), unit), _fmt(st.get("median"), unit), iqr, _fmt(st.get("min"), unit),
                     _fmt(st.get("max"), unit)])
    return head, rows


def _failure_rows(scan) -> list[list]:
    return [[f["case"], f.get("attempts"), f.get("error"), f.get("host")] for f in scan.failures[:LISTED_AT_MOST]]


def _md_table(head, rows) -> str:
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(head, rows) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _sections(scan, measures, plots: dict) -> list[tuple]:
    """(kind, payload) blocks shared by both renderers: ("h", level, text), ("p", text), ("table", head, rows),
    ("img", key, title)."""
    blocks = [("h", 1, f"Cohort summary: {scan.out_dir.name}"),
              ("p", f"{scan.out_dir} — {len(scan.cases)} finished case(s), {scan.rows} table row(s); written "
                    f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} by MedRegionCT {__version__}."),
              ("table", *_counts_table(scan))]
    blocks += [("h", 2, "Findings by kind and region")]
    head, rows = _findings_table(scan)
    blocks += [("table", head, rows)] if rows else [("p", "No finding was reported in any finished case.")]
    blocks += [("h", 2, "Regions by report status"),
               ("p", "How many cases had each region assessed, outside the field of view or not assessed (a "
                     "region not assessed states no finding either way).")]
    head, rows = _status_table(scan)
    blocks += [("table", head, rows)] if rows else [("p", "No report status recorded.")]
    blocks += [("h", 2, "Key measures")]
    for m in measures:
        blocks += [("h", 3, f"{m['title']} ({m['unit']})"), ("table", *_measure_table(m))]
        if m["key"] in plots:
            blocks.append(("img", m["key"], m["title"]))
        elif not any(s["values"].size for s in m["series"]):
            blocks.append(("p", "Not measured in any finished case."))
    blocks += [("h", 2, "Failed cases")]
    if scan.failures:
        more = len(scan.failures) - LISTED_AT_MOST
        blocks += [("p", f"{len(scan.failures)} case(s) failed after their retry; every one, with its first and "
                         f"last error, is in failures.csv and failures.json" + (f" ({more} more not listed here)."
                                                                                  if more > 0 else ".")),
                   ("table", ["case", "tries", "error", "host"], _failure_rows(scan))]
    else:
        blocks.append(("p", "None."))
    if scan.unreadable:
        blocks += [("h", 2, "Finished cases that could not be read"),
                   ("table", ["case", "error"], [[u["case"], u["error"]] for u in scan.unreadable[:LISTED_AT_MOST]])]
    waiting = [p for p in scan.pending if p not in scan.in_progress]
    if scan.in_progress or waiting:
        blocks += [("h", 2, "Not finished yet")]
        if scan.in_progress:
            rows = [[c, o.get("host", "?"), o.get("pid", "?")] for c, o in sorted(scan.in_progress.items())]
            blocks += [("p", "Being analysed (a claim file is held):"),
                       ("table", ["case", "host", "process"], rows[:LISTED_AT_MOST])]
        if waiting:
            blocks += [("p", f"{len(waiting)} case(s) of the input folder not run yet (run `medregionct batch` "
                             f"again, or the missing shards): {', '.join(waiting[:LISTED_AT_MOST])}"
                             + (" ..." if len(waiting) > LISTED_AT_MOST else ""))]
    return blocks


def to_markdown(blocks) -> str:
    parts = []
    for block in blocks:
        if block[0] == "h":
            parts.append("#" * block[1] + " " + block[2])
        elif block[0] == "p":
            parts.append(block[1])
        elif block[0] == "table":
            parts.append(_md_table(block[1], block[2]))
        elif block[0] == "img":
            parts.append(f"![{block[2]}]({PLOTS_DIR}/{block[1]}.png)")
    return "\n\n".join(parts) + "\n"


def to_html(blocks, plots: dict) -> str:
    parts = []
    title = "Cohort summary"
    for block in blocks:
        if block[0] == "h":
            title = block[2] if block[1] == 1 else title
            parts.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
        elif block[0] == "p":
            parts.append(f"<p>{html.escape(block[1])}</p>")
        elif block[0] == "table":
            parts.append(_html_table(block[1], block[2]))
        elif block[0] == "img":
            data = base64.b64encode(plots[block[1]]).decode("ascii")
            parts.append(f'<img alt="{html.escape(block[2])}" src="data:image/png;base64,{data}">')
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.2em .5em;"
             "text-align:left;vertical-align:top}th{background:#eee}img{display:block;margin:.5em 0}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_summary(scan, folder, plots: bool = True) -> list[Path]:
    """``cohort_summary.md`` (+ ``cohort_plots/*.png``) and ``cohort_summary.html`` (self-contained)."""
    folder = Path(folder)
    measures = measure_series(scan)
    images = {}
    if plots:
        plt = require_matplotlib()
        for m in measures:
            png = _plot(m, plt)
            if png is not None:
                images[m["key"]] = png
    written = []
    for key, png in images.items():
        written.append(atomic_write(folder / PLOTS_DIR / f"{key}.png", lambda tmp, png=png: Path(tmp).write_bytes(png)))
    blocks = _sections(scan, measures, images)
    written.append(write_text(folder / f"{SUMMARY_STEM}.md", to_markdown(blocks)))
    written.append(write_text(folder / f"{SUMMARY_STEM}.html", to_html(blocks, images)))
    return written
