"""Attributes -> sentences in MedRegion-CT's style ("A nodule with a diameter of 18.0 mm and a volume of
3.2 mL is identified in the right upper lobe."), used for the model prompt and for the report."""

from __future__ import annotations

from .position import LOBE_WORDS


def _where(lesion: dict) -> str:
    lobe = lesion.get("lobe")
    if lobe in LOBE_WORDS:
        return f"the {LOBE_WORDS[lobe]}"
    side = lesion.get("side")
    zone = lesion.get("zone")
    if side in ("left", "right"):
        return f"the {side} {zone + ' ' if zone else ''}lung zone" if zone else f"the {side} lung"
    return "the lungs"


def lesion_sentence(lesion: dict) -> str:
    kind = lesion["kind"]
    if kind == "pleural_effusion":
        side = lesion.get("side", "")
        side_word = f"{side} " if side in ("left", "right") else ""
        return (f"A {side_word}pleural effusion with a volume of {lesion['volume_ml']:.1f} mL is identified in "
                "the dependent pleural space.")
    if kind == "consolidation":
        signs = ", with air bronchograms" if lesion.get("air_bronchograms") else ""
        return (f"Consolidation with a diameter of {lesion['max_diameter_mm']:.1f} mm and a volume of "
                f"{lesion['volume_ml']:.1f} mL is identified in {_where(lesion)}{signs}.")
    subtype = lesion.get("subtype")
    adjective = f"{subtype} " if kind == "nodule" and subtype else ""
    article = "An" if adjective[:1] in ("a", "e", "i", "o", "u") else "A"
    return (f"{article} {adjective}{kind} with a diameter of {lesion['max_diameter_mm']:.1f} mm and a volume of "
            f"{lesion['volume_ml']:.1f} mL is identified in {_where(lesion)}.")


def _state(m: dict) -> str:
    if m.get("abnormal") is None:
        return ""
    op = ">=" if m["direction"] == "above" else "<="
    return (f", which is above the threshold ({op} {m['threshold']:g} {m['unit']}: {m['finding']})"
            if m["abnormal"] else f", within normal limits (threshold {m['threshold']:g} {m['unit']})")


def clinical_sentences(clinical: dict) -> dict[str, str]:
    """One sentence per available clinical measure, keyed by the measure name."""
    out = {}
    c = clinical
    if c.get("cardiothoracic_ratio", {}).get("value") is not None:
        m = c["cardiothoracic_ratio"]
        out["cardiothoracic_ratio"] = f"The cardiothoracic ratio on axial images is {m['value']:.2f}{_state(m)}."
    names = {"ascending_aorta_diameter_mm": "The ascending aorta measures",
             "descending_aorta_diameter_mm": "The descending aorta measures",
             "main_pulmonary_artery_diameter_mm": "The main pulmonary artery measures",
             "trachea_diameter_mm": "The trachea measures"}
    for key, lead in names.items():
        m = c.get(key, {})
        if m.get("value") is not None:
            out[key] = f"{lead} {m['value']:.1f} mm in diameter{_state(m)}."
    m = c.get("pa_to_aorta_ratio", {})
    if m.get("value") is not None:
        out["pa_to_aorta_ratio"] = f"The pulmonary artery to aorta ratio is {m['value']:.2f}{_state(m)}."
    lv = c.get("lung_volume_ml", {})
    if lv.get("right") or lv.get("left"):
        out["lung_volume_ml"] = (f"The right lung has a volume of {lv.get('right', 0.0):.1f} mL and the left lung "
                                 f"{lv.get('left', 0.0):.1f} mL.")
    m = c.get("laa_950_percent", {})
    if m.get("value") is not None:
        out["laa_950_percent"] = (f"Low-attenuation areas below -950 HU make up {m['value']:.1f}% of the lung "
                                  f"volume{_state(m)}.")
        affected = [n for n in m.get("lobes_abnormal") or [] if n in LOBE_WORDS and n in (m.get("lobes") or {})]
        if affected:
            crit = m["lobe_criterion"]
            parts = [f"{m['lobes'][n]:.1f}% of the {LOBE_WORDS[n]}" for n in affected]
            listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
            op = ">=" if crit.get("inclusive") else ">"
            out["laa_950_percent"] += (f" By lobe they make up {listed}, above the lobar threshold ({op} "
                                       f"{crit['threshold']:g} {crit['unit']}: {crit['finding']}).")
    for key, lead in (("pleural_effusion_volume_ml", "Segmented pleural fluid"),
                      ("pericardial_fluid_volume_ml", "Segmented pericardial fluid")):
        m = c.get(key, {})
        if m.get("value"):
            out[key] = f"{lead} has a volume of {m['value']:.1f} mL{_state(m)}."
    v = c.get("vertebral_levels", {})
    if v.get("range"):
        out["vertebral_levels"] = f"The scan covers the vertebrae {v['range']}."
    return out


def structure_sentence(name: str, attrs: dict) -> str:
    words = name.replace("_", " ")
    return (f"The {words} has a volume of {attrs['volume_ml']:.1f} mL and a mean attenuation of "
            f"{attrs.get('hu_mean', 0.0):.0f} HU.")
