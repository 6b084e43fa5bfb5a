"""Display names, units and number formatting for measurement keys (units ride in the keys: ``volume_ml``).

Shared by the Markdown and HTML renderers so both show a measurement the same way.
"""

from __future__ import annotations

import math
import re
from numbers import Number

# key suffix -> unit shown (longest first: "_mm2" before "_mm")
_SUFFIXES = (("_mm2", "mm²"), ("_mm", "mm"), ("_ml", "mL"), ("_hu", "HU"), ("_percent", "%"), ("_cm", "cm"),
             ("_s", "s"), ("_deg", "°"))
# whole-key names worth a clearer label than the key itself
_LABELS = {
    "hu_mean": ("Mean attenuation", "HU"), "hu_sd": ("Attenuation SD", "HU"), "hu_p50": ("Median attenuation", "HU"),
    "hu_min": ("Minimum attenuation", "HU"), "hu_max": ("Maximum attenuation", "HU"),
    "cardiothoracic_ratio": ("Cardiothoracic ratio", ""), "pa_to_aorta_ratio": ("PA:aorta ratio", ""),
    "laa_950_percent": ("Low-attenuation area < −950 HU", "%"), "max_diameter_mm": ("Maximum diameter", "mm"),
    "main_pulmonary_artery_diameter_mm": ("Main pulmonary artery diameter", "mm"),
    "axial_long_axis_mm": ("Axial long axis", "mm"), "axial_short_axis_mm": ("Axial short axis", "mm"),
    "confidence": ("Confidence", ""), "solid_fraction": ("Solid fraction", ""),
}
# keys of a measure-layer dict that describe the value rather than being one
_META_KEYS = {"unit", "threshold", "direction", "finding", "source", "abnormal", "slices_measured", "value"}


def split_unit(key: str) -> tuple[str, str]:
    """``"volume_ml"`` -> ``("Volume", "mL")``; ``"cardiothoracic_ratio"`` -> ``("Cardiothoracic ratio", "")``."""
    key = str(key)
    if key in _LABELS:
        return _LABELS[key]
    unit = ""
    stem = key
    for suffix, shown in _SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            stem, unit = key[: -len(suffix)], shown
            break
    hu = re.search(r"(?:^|_)hu_(mean|sd|min|max|p\d+)$", key)
    if hu:  # "thyroid_gland_hu_mean" -> "Thyroid gland mean attenuation" (HU)
        what = {"sd": "attenuation SD", "p50": "median attenuation"}.get(hu.group(1), f"{hu.group(1)} attenuation")
        stem, unit = (key[: hu.start()] + " " + what).strip(), "HU"
    words = stem.replace("_", " ").strip()
    return (words[:1].upper() + words[1:]) if words else key, unit


def format_number(value) -> str:
    """Numbers as a report shows them: 2668.7, 46.0, 1.4, 0.38, 12; text as given; None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Number):
        v = float(value)
        if not math.isfinite(v):
            return "—"
        if float(v).is_integer() and isinstance(value, int):
            return str(int(v))
        a = abs(v)
        if a >= 1:
            return f"{v:.1f}"
        if a >= 0.01 or a == 0:
            return f"{v:.2f}"
        return f"{v:.2g}"
    if isinstance(value, list | tuple):
        return " × ".join(format_number(v) for v in value)
    return str(value)


def measurement_rows(measurements: dict) -> list[tuple[str, str, str]]:
    """``(label, value, unit)`` rows of a headline-measurement dict (nested dicts flattened one level).

    A measure-layer judgement ``{"value": 0.62, "unit": "ratio", ...}`` shows as its value; ``{"right": 2668.7,
    "left": 2623.3}`` under ``lung_volume_ml`` as one row per side.
    """
    rows = []
    for key, value in (measurements or {}).items():
        label, unit = split_unit(key)
        if isinstance(value, dict):
            if "value" in value:
                shown_unit = value.get("unit", unit)
                rows.append((label, format_number(value["value"]), "" if shown_unit == "ratio" else str(shown_unit)))
                continue
            for sub, v in value.items():
                if sub in _META_KEYS or isinstance(v, dict | list):
                    continue
                sub_label, sub_unit = split_unit(sub)
                rows.append((f"{label} ({sub_label.lower()})", format_number(v), sub_unit or unit))
            continue
        rows.append((label, format_number(value), unit))
    return rows


def size_text(size: dict) -> str:
    """A finding's size dict as one short phrase: ``"max Ø 38.7 mm, 12.7 mL, axial 38.1 × 28.5 mm"``."""
    size = dict(size or {})
    parts = []
    long_axis, short_axis = size.pop("axial_long_axis_mm", None), size.pop("axial_short_axis_mm", None)
    for key, value in size.items():
        label, unit = split_unit(key)
        label = {"max_diameter_mm": "max Ø", "volume_ml": "", "diameter_mm": ""}.get(key, label.lower())
        parts.append(f"{label} {format_number(value)} {unit}".strip())
    if long_axis is not None:
        axes = format_number(long_axis) + (f" × {format_number(short_axis)}" if short_axis is not None else "")
        parts.append(f"axial {axes} mm")
    return ", ".join(parts)


def measurement_part(measurements, name: str):
    """``measurements.<name>`` of a ``measure.Measurements`` or ``measurements[name]`` of its JSON form."""
    if measurements is None:
        return None
    if isinstance(measurements, dict):
        return measurements.get(name)
    return getattr(measurements, name, None)


_REGION_HEADLINE = ("volume_ml", "hu_mean", "max_diameter_mm")


def region_headline(region, measurements=None) -> dict:
    """The numbers to show for a region: the report's own headline measurements, else the region's volume,
    mean attenuation and maximum diameter from ``measurements`` (``measure.Measurements`` or its JSON)."""
    if region.measurements:
        return dict(region.measurements)
    attrs = (measurement_part(measurements, "regions") or {}).get(region.key) or {}
    return {k: attrs[k] for k in _REGION_HEADLINE if attrs.get(k) is not None}
