"""Lobes: each lung is split along its fissures where they can be found (thin sheets a little denser than the
lung around them, fitted as planes near their usual course), otherwise into zones that follow the usual course
of the fissures (an oblique plane per lung and on the right a horizontal one). ``meta["lobes"]`` says which:
``"fissures"``, ``"fissures+zones"`` (some found) or ``"zones"``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from .grid import Grid

# slope of the oblique fissure: z falls 0.85 mm per mm towards anterior (high at the back, at the diaphragm in
# front, as drawn in anatomy atlases)
OBLIQUE_SLOPE = 0.85


@dataclass
class LobeModel:
    """Planes ``z = a + b*y + c*x`` in canonical-grid millimetres (x right, y anterior, z superior): the oblique
    plane per side (upper lobe above) and the right horizontal plane (upper lobe above, middle lobe below)."""

    oblique: dict = field(default_factory=dict)     # side -> (a, b, c)
    horizontal: tuple | None = None
    method: str = "zones"
    notes: list = field(default_factory=list)

    def lobe_names(self, side: str) -> list[str]:
        if side == "left":
            return ["lung_upper_lobe_left", "lung_lower_lobe_left"]
        if self.horizontal is None:
            return ["lung_upper_lobe_right", "lung_lower_lobe_right"]
        return ["lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right"]

    def assign(self, side: str, x_mm: np.ndarray, y_mm: np.ndarray, z_mm: np.ndarray) -> np.ndarray:
        """Index into :meth:`lobe_names` for points with canonical coordinates (mm)."""
        a, b, c = self.oblique[side]
        upper = z_mm >= a + b * y_mm + c * x_mm
        if side == "left" or self.horizontal is None:
            return np.where(upper, 0, 1).astype(np.uint8)
        ha, hb, hc = self.horizontal
        return np.where(upper, np.where(z_mm >= ha + hb * y_mm + hc * x_mm, 0, 1), 2).astype(np.uint8)


def _coords(grid: Grid, pts: np.ndarray):
    return grid.coarse_mm(0, pts[:, 0]), grid.coarse_mm(1, pts[:, 1]), grid.coarse_mm(2, pts[:, 2])


def zone_model(grid: Grid, left: np.ndarray, right: np.ndarray, carina) -> LobeModel:
    """Zones along the usual course of the fissures. With the whole lung in view the planes are placed at adult
    lobar shares (upper lobe ~48 % of each lung, middle lobe ~30 % of the right upper zone); with a lung cut by
    the field of view they are placed from the carina."""
    model = LobeModel(method="zones", notes=["fissures not found: lungs split into upper/lower zones"])
    k = OBLIQUE_SLOPE
    nz = left.shape[2]
    cut = any(m.any() and (m[:, :, 0].any() or m[:, :, nz - 1].any()) for m in (left, right))
    if cut and carina is not None:
        zc = float(grid.coarse_mm(2, carina[2]))
        yc = float(grid.coarse_mm(1, carina[1]))
        for side in ("left", "right"):
            model.oblique[side] = (zc - 15.0 + k * yc, -k, 0.0)
        model.horizontal = (zc - 15.0, 0.0, 0.0)
        model.notes = ["fissures not found and the lungs are cut by the field of view: zones placed from the carina"]
        return model
    for side, lung in (("left", left), ("right", right)):
        if not lung.any():
            model.oblique[side] = (0.0, -k, 0.0)
            continue
        _, y, z = _coords(grid, np.argwhere(lung))
        model.oblique[side] = (float(np.quantile(z + k * y, 0.52)), -k, 0.0)
    if right.any():
        _, y, z = _coords(grid, np.argwhere(right))
        a, b, _ = model.oblique["right"]
        upper = z[z >= a + b * y]
        if upper.size:
            model.horizontal = (float(np.quantile(upper, 0.30)), 0.0, 0.0)
    return model


def bases_model() -> LobeModel:
    """Only lung bases in view (no chest CT): all of it is lower lobe."""
    model = LobeModel(method="bases", notes=["only the lung bases are in view: labelled as lower lobes"])
    model.oblique = {"left": (np.inf, 0.0, 0.0), "right": (np.inf, 0.0, 0.0)}
    return model


def fissure_model(grid: Grid, left: np.ndarray, right: np.ndarray, prior: LobeModel, params: dict) -> LobeModel:
    """Fit the fissures near the prior zones' planes; keep each prior plane whose fissure is not found."""
    c = grid.coarse
    # a fissure is a sheet a little denser than the lung on both sides: positive against a local mean, yet far
    # below vessel density; vessel walls (next to dense voxels) are left out
    sheet = (c - ndi.gaussian_filter(c, 1.5) > params["contrast_hu"]) & (c < params["hu_max"])
    sheet &= ~ndi.binary_dilation(c > params["hu_max"] + 50)
    model = LobeModel(oblique=dict(prior.oblique), horizontal=prior.horizontal)
    found, looked = [], []
    for side, lung in (("left", left), ("right", right)):
        if not lung.any():
            continue
        inner = ndi.binary_erosion(lung, iterations=2)
        pts = np.argwhere(sheet & inner)
        looked.append(f"{side} oblique")
        plane = _fit_plane(grid, pts, inner, prior.oblique[side], params, slope=(-2.0, -0.3))
        if plane is not None:
            model.oblique[side] = plane
            found.append(f"{side} oblique")
        if side == "right" and prior.horizontal is not None:
            looked.append("right horizontal")
            x, y, z = _coords(grid, pts)
            a, b, cc = model.oblique["right"]
            above = z > a + b * y + cc * x + params["inlier_mm"] * 2
            idx = np.argwhere(inner)
            ix, iy, iz = _coords(grid, idx)
            upper_part = np.zeros(inner.shape, bool)
            keep = iz >= a + b * iy + cc * ix
            upper_part[tuple(idx[keep].T)] = True
            plane = _fit_plane(grid, pts[above], upper_part, prior.horizontal, params, slope=(-0.5, 0.5))
            if plane is not None:
                model.horizontal = plane
                found.append("right horizontal")
    if found and len(found) == len(looked):
        model.method, model.notes = "fissures", []
    elif found:
        model.method = "fissures+zones"
        model.notes = [f"fissures found: {', '.join(found)}; the others placed as zones"]
    else:
        model.method, model.notes = prior.method, prior.notes
    return model


def _fit_plane(grid: Grid, pts: np.ndarray, region: np.ndarray, prior, params: dict, slope):
    """Trimmed least-squares plane z = a + b*y + c*x through sheet points near the prior plane, or None when
    the points do not cover enough of the plane's cut through ``region`` to be a fissure."""
    if len(pts) < params["min_points"]:
        return None
    x, y, z = _coords(grid, pts)
    a, b, c = prior
    for window in params["windows_mm"]:
        sel = np.abs(z - (a + b * y + c * x)) < window
        if sel.sum() < params["min_points"]:
            return None
        design = np.stack([np.ones(sel.sum()), y[sel], x[sel]], axis=1)
        (a, b, c), *_ = np.linalg.lstsq(design, z[sel], rcond=None)
    if not (slope[0] <= b <= slope[1]) or abs(c) > params["max_x_slope"]:
        return None
    inliers = int((np.abs(z - (a + b * y + c * x)) < params["inlier_mm"]).sum())
    # how many voxels of the region the plane crosses (a one-voxel slab), to judge the support
    idx = np.argwhere(region)
    rx, ry, rz = _coords(grid, idx)
    slab = int((np.abs(rz - (a + b * ry + c * rx)) < 0.5 * grid.coarse_spacing[2]).sum())
    if slab == 0 or inliers < params["min_support"] * slab:
        return None
    return float(a), float(b), float(c)
