"""Region masks -> DICOM Segmentation (binary, one segment per region, coded with the schema's terminology)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...atomic import atomic_write
from ...errors import InputError
from .dicom_common import (
    MANUFACTURER,
    frame_indices,
    import_highdicom,
    rgb_to_cielab,
    series_affine,
    software_version,
)
from .dicom_source import check_source_datasets, sort_along_normal


def _segments(masks, schema, affine):
    """[(Region, bool mask)] in schema order and the masks' affine."""
    from ...anatomy import build_regions, load_schema
    from ...volume import LabelMap

    if isinstance(masks, LabelMap):
        return [(r.region, r.mask) for r in build_regions(masks, load_schema(schema))], masks.affine
    if isinstance(masks, dict):
        schema = load_schema(schema)
        pairs = []
        for key, mask in masks.items():
            try:
                pairs.append((schema[key], np.asarray(mask, dtype=bool)))
            except KeyError:
                raise InputError(f"region {key!r} is not in schema {schema.name}; regions: "
                                 f"{', '.join(schema.keys)}.") from None
        order = {k: i for i, k in enumerate(schema.keys)}
        return sorted(pairs, key=lambda p: order[p[0].key]), affine
    # anatomy.RegionMask list: each carries its region (code, colour), so the schema is not needed
    pairs = [(r.region, np.asarray(r.mask, dtype=bool)) for r in masks]
    return pairs, affine


def write_dicom_seg(masks, schema, source_datasets, path, *, affine=None, segmenter: str = "",
                    series_number: int = 901, series_description: str = "MedRegionCT regions"):
    """Write a DICOM SEG of the regions to ``path``; returns the path.

    ``masks``: a ``LabelMap`` (regions are built from it with ``schema``), a list of ``anatomy.RegionMask`` (their
    own regions give codes and colours; ``schema`` is not used) or ``{region key: bool mask}`` (``schema`` names
    the regions). Masks lie on ``affine`` (a LabelMap's own affine by default), else on the
    series' own grid as ``read_volume`` returns it. ``source_datasets``: the CT series' headers
    (:func:`read_dicom_headers`). Each non-empty region is one segment with the schema's SNOMED CT code and
    colour; empty regions are left out.
    """
    what = "DICOM SEG"
    datasets = sort_along_normal(check_source_datasets(source_datasets, what))
    hd = import_highdicom()
    from pydicom.sr.codedict import codes

    pairs, grid_affine = _segments(masks, schema, affine)
    if grid_affine is None:
        grid_affine = series_affine(datasets)
    pairs = [(region, mask) for region, mask in pairs if mask.any()]
    if not pairs:
        raise InputError("every region mask is empty, so there is nothing to put in a DICOM SEG; check the "
                         "segmentation.")
    shape = pairs[0][1].shape
    for region, mask in pairs:
        if mask.shape != shape:
            raise InputError(f"region {region.key!r} mask has shape {mask.shape}, others {shape}; all masks "
                             "must be on the CT grid.")
    overlap = sum(m.astype(np.uint8) for _, m in pairs).max() > 1 if len(pairs) > 1 else False
    n = len(pairs)
    if overlap:
        pixels = np.zeros((len(datasets), int(datasets[0].Rows), int(datasets[0].Columns), n), dtype=bool)
    else:
        labels = np.zeros(shape, dtype=np.uint8 if n < 256 else np.uint16)
        for number, (_, mask) in enumerate(pairs, start=1):
            labels[mask] = number
        pixels = np.zeros((len(datasets), int(datasets[0].Rows), int(datasets[0].Columns)), dtype=labels.dtype)
    for f, ds in enumerate(datasets):
        i, j, k = frame_indices(ds, grid_affine, shape)
        if overlap:
            for s, (_, mask) in enumerate(pairs):
                pixels[f, :, :, s] = mask[i, j, k]
        else:
            pixels[f] = labels[i, j, k]
    family = (codes.cid7162.ArtificialIntelligence if "totalseg" in segmenter.lower()
              else codes.cid7162.MorphologicalOperations)
    algorithm = hd.AlgorithmIdentificationSequence(name=f"MedRegionCT {segmenter}".strip(), family=family,
                                                   version=software_version())
    descriptions = []
    for number, (region, _) in enumerate(pairs, start=1):
        term = region.terminology.as_dict()
        category = term["category"]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=region.name[:64],
            segmented_property_category=hd.sr.CodedConcept(category["code"], category["scheme"],
                                                           category["meaning"]),
            segmented_property_type=hd.sr.CodedConcept(term["code"], term["scheme"], term["meaning"]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
            tracking_id=region.key[:64], tracking_uid=hd.UID(),
            display_color=hd.color.CIELabColor(*rgb_to_cielab(region.color))))
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name="MedRegionCTLib", software_versions=software_version(),
        device_serial_number="0", series_description=series_description[:64])
    return atomic_write(Path(path), lambda tmp: seg.save_as(tmp))
