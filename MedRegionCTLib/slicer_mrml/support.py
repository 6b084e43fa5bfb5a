"""Qt-free parts of the Slicer module, testable without Slicer:

- :func:`reporter_for_engine`: the report engine the module's choices stand for (a server needs consent);
- :func:`load_api_key` / :func:`store_api_key`: the server API key in the system keyring (never in Slicer's
  settings or the scene; without a keyring the module keeps it for the session only);
- :func:`report_panel_html`: the header (scope: which segmentation engine ran and why, ...), the
  contradictions, then one clickable paragraph per region (the link names the region's index);
- :func:`region_key_from_link`: the region key a clicked link stands for;
- :func:`export_report`: JSON, Markdown, HTML or DICOM SR file of a report;
- :class:`ThreadJob`: work in a worker thread whose progress and end the GUI thread polls (so MRML is only
  touched from the GUI thread), with a :class:`~MedRegionCTLib.progress.CancelToken`.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path

from ..errors import InputError
from ..progress import CancelToken

LINK_PREFIX = "region:"
EXPORT_SUFFIXES = {".json": "json", ".md": "md", ".html": "html", ".htm": "html", ".dcm": "dcm"}


ENGINES = ("measurement", "server")
KEYRING_SERVICE = "MedRegionCT report server"


def load_api_key(url: str) -> str:
    """The API key kept for ``url`` in the system keyring ("" when there is none or no keyring)."""
    try:
        import keyring

        return keyring.get_password(KEYRING_SERVICE, url.strip()) or ""
    except Exception:  # no keyring package or no usable backend
        return ""


def store_api_key(url: str, key: str) -> bool:
    """Keep ``key`` for ``url`` in the system keyring; False when no keyring is available."""
    try:
        import keyring

        keyring.set_password(KEYRING_SERVICE, url.strip(), key)
        return True
    except Exception:  # no keyring package or no usable backend: never fall back to a plain-text file
        return False


def reporter_for_engine(engine: str, server_url: str = "", api_key: str | None = None,
                        consent: bool = False) -> tuple[str, dict]:
    """``(reporter, reporter_options)`` for ``pipeline.analyze`` / ``run_batch``. Nothing is sent to a server
    unless ``consent`` is True: the user's explicit choice, never a stored default."""
    if engine == "server":
        url = (server_url or "").strip()
        if not url:
            raise InputError("no report server URL; enter the server's address or use the offline reporter.")
        if consent is not True:
            raise InputError("sending the CT to a report server needs your consent; tick the consent box "
                             "(consent=True when scripting) or use the offline measurement reporter.")
        return f"server:{url}", {"api_key": api_key or None}
    if engine == "measurement":
        return "measurement", {}
    raise InputError(f"unknown report engine {engine!r}; use {' or '.join(ENGINES)}.")


def _plain(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ')}: {_plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def scope_lines(report) -> list[tuple[str, str]]:
    """The report header as ``(label, text)`` lines: which segmentation engine ran and why, whether the scan is
    a chest CT, then the notes, quality checks, coverage and limitations the chain recorded."""
    scope = dict(getattr(report.provenance, "scope", None) or {})
    lines = []
    choice = scope.pop("segmentation", None)
    if isinstance(choice, dict):
        engine = choice.get("engine") or report.provenance.segmenter
        reason = choice.get("reason", "")
        lines.append(("Segmentation", f"{engine}: {reason}" if reason else engine))
    elif report.provenance.segmenter:
        lines.append(("Segmentation", report.provenance.segmenter))
    if "chest_ct" in scope:
        chest = scope.pop("chest_ct")
        lines.append(("Chest CT", "yes" if chest else "NO: the scan does not look like a chest CT; read with care"))
    for key in ("notes", "quality_checks", "coverage", "limitations"):
        value = scope.pop(key, None)
        if value:
            items = value if isinstance(value, list) else [value]
            lines += [(key.replace("_", " ").capitalize(), _plain(v)) for v in items]
    lines += [(key.replace("_", " ").capitalize(), _plain(value)) for key, value in scope.items() if value]
    return lines


def report_panel_html(report, colors: dict | None = None, impression_title: str = "Impression") -> str:
    """Rich text for a QTextBrowser: the header (scope: segmentation engine and why, chest CT check, notes,
    quality checks, coverage, limitations), the contradictions the consistency check recorded, the impression,
    then 'Name: paragraph' per region, each a link ``region:<index>``; ``colors``: region key -> (r, g, b)
    0-255 (the segment colours)."""
    colors = colors or {}
    parts = []
    header = scope_lines(report)
    if header:
        items = "".join(f"<li><b>{html.escape(label)}:</b> {html.escape(text)}</li>" for label, text in header)
        parts.append(f'<div class="scope"><ul>{items}</ul></div>')
    contradictions = getattr(report, "contradictions", None) or []
    if contradictions:
        names = {r.key: r.name for r in report.regions}
        items = "".join(
            f"<li><b>{html.escape(names.get(c.region, c.region))}</b>: &ldquo;{html.escape(c.text)}&rdquo; "
            f"&mdash; states {html.escape(c.claim)}; measured: {html.escape(c.measured)} "
            f"<i>({'replaced' if c.action == 'replaced' else 'flagged, kept as written'})</i></li>"
            for c in contradictions)
        parts.append(f'<h3 style="color:#a00000">Contradicted by the measurements</h3><ul>{items}</ul>')
    if report.impression:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in report.impression)
        parts.append(f"<h3>{html.escape(impression_title)}</h3><ul>{items}</ul>")
    for i, region in enumerate(report.regions):
        r, g, b = (int(c) for c in colors.get(region.key, (128, 128, 128)))
        note = "" if region.status == "assessed" else f" <i>({html.escape(region.status.replace('_', ' '))})</i>"
        parts.append(f'<p><a href="{LINK_PREFIX}{i}" style="text-decoration:none;color:#202020">'
                     f'<b><span style="color:rgb({r},{g},{b})">&#9632;</span> {html.escape(region.name)}</b>{note}: '
                     f"{html.escape(region.paragraph)}</a></p>")
    return "".join(parts)


def region_key_from_link(report, link: str) -> str | None:
    """The key of the region a panel link points to (None for any other link)."""
    if not link.startswith(LINK_PREFIX):
        return None
    try:
        return report.regions[int(link[len(LINK_PREFIX):])].key
    except (ValueError, IndexError):
        return None


def export_report(report, path, fmt: str | None = None, analysis=None, dicom_datasets=None) -> Path:
    """Write ``report`` to ``path`` as ``fmt`` ("json", "md", "html", "dcm"; from the suffix by default).

    ``analysis`` (pipeline.Analysis, or anything with ``volume``, ``regions`` (RegionMask list or
    ``{key: mask}``) and ``measurements``) adds key images to HTML and numbers to Markdown and DICOM SR;
    ``dicom_datasets``: the CT series' headers (pydicom datasets or the series' file paths), needed for DICOM SR.
    """
    from ..pipeline.outputs import write_text
    from ..report import render

    path = Path(path)
    fmt = fmt or EXPORT_SUFFIXES.get(path.suffix.lower())
    measurements = analysis.measurements if analysis is not None else None
    if fmt == "json":
        return report.save(path)
    if fmt == "md":
        return write_text(path, render.to_markdown(report, measurements))
    if fmt == "html":
        if analysis is None:
            return write_text(path, render.to_html(report))
        return write_text(path, render.to_html(report, volume=analysis.volume, regions=analysis.regions,
                                               measurements=measurements))
    if fmt == "dcm":
        if not dicom_datasets or not all(dicom_datasets):
            raise InputError("DICOM SR needs the CT's DICOM series; load the CT through the DICOM module, or "
                             "export JSON, Markdown or HTML.")
        if isinstance(dicom_datasets[0], str | Path):
            import pydicom

            dicom_datasets = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in dicom_datasets]
        render.write_dicom_sr(report, measurements, dicom_datasets, path)
        return path
    raise InputError(f"cannot export a report as {fmt or path.suffix!r}; use .json, .md, .html or .dcm.")


class ThreadJob:
    """``work(progress, cancel)`` in a daemon thread. The GUI polls :meth:`poll` (e.g. from a QTimer) and
    touches MRML only there; ``cancel`` is set by :meth:`cancel_job` from any thread."""

    def __init__(self, work):
        self.cancel = CancelToken()
        self.result = None
        self.error: BaseException | None = None
        self._work = work
        self._progress = (0.0, "")
        self._thread = threading.Thread(target=self._run, name="MedRegionCT job", daemon=True)

    def start(self) -> ThreadJob:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = self._work(self._set_progress, self.cancel)
        except BaseException as error:  # handed to the GUI thread as it is
            self.error = error

    def _set_progress(self, fraction: float, message: str = "") -> None:
        self._progress = (float(fraction), str(message))

    def cancel_job(self) -> None:
        self.cancel.set()

    @property
    def done(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    def poll(self) -> tuple[float, str, bool]:
        """(fraction, message, finished)."""
        return (*self._progress, self.done)

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.done
