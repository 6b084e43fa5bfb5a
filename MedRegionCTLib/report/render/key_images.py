"""Key images: axial and coronal CT slices with a region overlay, oriented radiologically, as PNG.

Orientation comes from the affine, never from the array's axis order: the CT is first reoriented (exactly, no
resampling) to LPS voxel order, in which an axial slice ``[:, :, k].T`` has the patient's right on the image's
left and anterior at the top, and a coronal slice ``[:, j, :].T`` flipped top-bottom has superior at the top
and the patient's right on the left. Pixels are resized to square millimetres so the aspect is true.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from ...errors import InputError
from ...volume import LabelMap, reorient

DISPLAY_ORIENTATION = "LPS"
# (level, width) in HU
WINDOWS = {"lung": (-600.0, 1500.0), "soft_tissue": (40.0, 400.0), "bone": (400.0, 1800.0)}
WINDOW_TEXT = {"lung": "lung window", "soft_tissue": "soft-tissue window", "bone": "bone window"}
# Region keys (RadGenome-10 and MedRegion-6) -> window; unknown keys fall back on words in the key.
REGION_WINDOWS = {"lung": "lung", "trachea and bronchie": "lung", "lung_parenchyma": "lung",
                  "large_airways": "lung", "bone": "bone", "musculoskeletal": "bone"}
_LUNG_WORDS = ("lung", "airway", "trachea", "bronch")
_BONE_WORDS = ("bone", "skelet", "spine", "rib", "vertebra")
ORIENTATION_MARKS = {"axial": {"left": "R", "right": "L", "top": "A", "bottom": "P"},
                     "coronal": {"left": "R", "right": "L", "top": "S", "bottom": "I"}}
LESION_COLOR = (255, 221, 0)
FILL_ALPHA = 0.35
MAX_RING_PX = 40


def window_for(key: str) -> str:
    """Display window for a region: lung window for lungs and airways, bone window for bone, else soft tissue."""
    if key in REGION_WINDOWS:
        return REGION_WINDOWS[key]
    low = key.lower()
    if any(w in low for w in _LUNG_WORDS):
        return "lung"
    if any(w in low for w in _BONE_WORDS):
        return "bone"
    return "soft_tissue"


@dataclass
class KeyImage:
    view: str  # "axial" | "coronal"
    data: bytes
    mime: str
    width: int
    height: int
    slice_number: int  # 1-based, counted from inferior (axial) or anterior (coronal)
    n_slices: int
    position_mm: float  # RAS z (axial) or y (coronal) of the slice
    window: str
    marks: dict = field(default_factory=dict)  # side -> orientation letter shown at that image edge
    overlay_pixels: int = 0  # image pixels covered by the region overlay
    lesion_pixels: int = 0  # image pixels covered by lesion outlines/markers

    def data_uri(self) -> str:
        return f"data:{self.mime};base64," + base64.b64encode(self.data).decode("ascii")

    def caption(self) -> str:
        axis = "z" if self.view == "axial" else "y"
        return (f"{self.view.capitalize()}, {axis} = {self.position_mm:.1f} mm (slice {self.slice_number}/"
                f"{self.n_slices}), {WINDOW_TEXT.get(self.window, self.window)}")


@dataclass
class Overlay:
    mask: np.ndarray  # boolean, display (LPS) grid
    color: tuple[int, int, int]
    fill: bool = True
    outline_px: int = 2


class KeyImageMaker:
    """Cuts oriented, windowed, overlaid key images from one CT.

    ``target_px``: the longer side of the field of view in image pixels; ``image_format``: ``"png"`` or
    ``"jpeg"``.
    """

    def __init__(self, volume, target_px: int = 448, image_format: str = "png"):
        if image_format not in ("png", "jpeg"):
            raise InputError(f"image format {image_format!r} is not supported; use 'png' or 'jpeg'.")
        self.volume = volume
        self.display = reorient(volume, DISPLAY_ORIENTATION)
        self.spacing = np.asarray(self.display.spacing, dtype=np.float64)
        extent = np.asarray(self.display.shape) * self.spacing
        self.mm_per_px = float(extent.max()) / int(target_px)
        self.image_format = image_format

    # --- geometry ---------------------------------------------------------------------------------------
    def orient(self, mask: np.ndarray) -> np.ndarray:
        """A boolean mask on the CT grid, in display (LPS) voxel order (a view, no copy)."""
        mask = np.asarray(mask)
        if tuple(mask.shape) != tuple(self.volume.shape):
            raise InputError(f"a region mask of shape {mask.shape} is not on the CT grid {self.volume.shape}; "
                             "give masks built on this CT (anatomy.build_regions).")
        if mask.dtype != bool:
            mask = mask.astype(bool)
        labels = LabelMap(mask.view(np.uint8), self.volume.affine)
        return reorient(labels, DISPLAY_ORIENTATION).array.view(bool)

    def point_index(self, ras) -> np.ndarray:
        """RAS mm -> nearest display voxel index (clipped into the grid)."""
        ijk = np.rint(self.display.world_to_index(np.asarray(ras, dtype=np.float64)))
        return np.clip(ijk, 0, np.asarray(self.display.shape) - 1).astype(int)

    @staticmethod
    def largest_sections(mask_d: np.ndarray) -> tuple[int, int] | None:
        """(axial k, coronal j) of the mask's largest cross-sections in display order; None when empty."""
        axial = np.count_nonzero(mask_d, axis=(0, 1)) if mask_d.ndim == 3 else None
        if axial is None or not axial.any():
            return None
        coronal = np.count_nonzero(mask_d, axis=(0, 2))
        return int(np.argmax(axial)), int(np.argmax(coronal))

    # --- rendering --------------------------------------------------------------------------------------
    def _plane(self, array: np.ndarray, view: str, index: int) -> np.ndarray:
        if view == "axial":
            return array[:, :, index].T  # rows: anterior -> posterior; columns: right -> left
        return array[:, index, :].T[::-1]  # rows: superior -> inferior; columns: right -> left

    def _size(self, view: str) -> tuple[int, int]:
        n = self.display.shape
        s = self.spacing
        rows_mm = n[1] * s[1] if view == "axial" else n[2] * s[2]
        return (max(1, round(n[0] * s[0] / self.mm_per_px)), max(1, round(rows_mm / self.mm_per_px)))

    def _resize_mask(self, plane: np.ndarray, size) -> np.ndarray:
        img = Image.fromarray(plane.astype(np.uint8) * 255).resize(size, Image.Resampling.BILINEAR)
        return np.asarray(img) >= 128

    def render(self, view: str, index: int, window: str, overlays: list[Overlay] = (), lesions: list = (),
               points: list = ()) -> KeyImage:
        """One key image. ``overlays``: region fills/outlines; ``lesions``: display-grid lesion masks, outlined
        and ringed in :data:`LESION_COLOR`; ``points``: display voxel indices to ring (findings without masks)."""
        if view not in ORIENTATION_MARKS:
            raise InputError(f"unknown view {view!r}; use 'axial' or 'coronal'.")
        axis = 2 if view == "axial" else 1
        n_slices = self.display.shape[axis]
        index = int(np.clip(index, 0, n_slices - 1))
        size = self._size(view)
        level, width = WINDOWS[window]
        hu = self._plane(self.display.array, view, index).astype(np.float32)
        grey = np.clip((hu - (level - width / 2.0)) * (255.0 / width), 0, 255).astype(np.uint8)
        grey = np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR))
        rgb = np.repeat(grey[:, :, None], 3, axis=2).astype(np.float32)
        covered = np.zeros(grey.shape, dtype=bool)
        for ov in overlays:
            m = self._resize_mask(self._plane(ov.mask, view, index), size)
            if not m.any():
                continue
            color = np.asarray(ov.color, dtype=np.float32)
            if ov.fill:
                rgb[m] = (1 - FILL_ALPHA) * rgb[m] + FILL_ALPHA * color
            if ov.outline_px:
                edge = m & ~ndimage.binary_erosion(m, iterations=ov.outline_px, border_value=0)
                halo = ndimage.binary_dilation(m, iterations=1) & ~m  # dark rim: the outline shows on white too
                rgb[halo] *= 0.35
                rgb[edge] = color
            covered |= m
        lesion_px = np.zeros(grey.shape, dtype=bool)
        rings = []
        for les in lesions:
            m = self._resize_mask(self._plane(les, view, index), size)
            if not m.any():
                continue
            edge = m & ~ndimage.binary_erosion(m, iterations=2, border_value=0)
            rgb[ndimage.binary_dilation(m, iterations=1) & ~m] *= 0.35
            rgb[edge] = LESION_COLOR
            lesion_px |= edge
            rows, cols = np.nonzero(m)
            radius = 0.5 * float(max(np.ptp(rows), np.ptp(cols))) + 8
            if radius <= MAX_RING_PX:  # small lesions get a ring so they are found at a glance
                rings.append((float(cols.mean()), float(rows.mean()), radius))
        for ijk in points:
            ijk = np.asarray(ijk, dtype=int)
            if ijk[axis] != index:
                continue
            col = (ijk[0] + 0.5) * self.spacing[0] / self.mm_per_px
            if view == "axial":
                row = (ijk[1] + 0.5) * self.spacing[1] / self.mm_per_px
            else:
                row = (self.display.shape[2] - ijk[2] - 0.5) * self.spacing[2] / self.mm_per_px
            rings.append((col, row, 12.0))
        image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
        if rings:
            draw = ImageDraw.Draw(image)
            for x, y, r in rings:
                draw.ellipse([x - r, y - r, x + r, y + r], outline=LESION_COLOR, width=2)
            lesion_px |= np.all(np.asarray(image) == LESION_COLOR, axis=2)
        buf = io.BytesIO()
        if self.image_format == "png":
            image.save(buf, format="PNG")
            mime = "image/png"
        else:
            image.save(buf, format="JPEG", quality=88)
            mime = "image/jpeg"
        position = self.display.index_to_world([0, index, 0] if view == "coronal" else [0, 0, index])[
            1 if view == "coronal" else 2]
        # display order: k runs inferior -> superior, j anterior -> posterior
        return KeyImage(view=view, data=buf.getvalue(), mime=mime, width=size[0], height=size[1],
                        slice_number=index + 1, n_slices=n_slices, position_mm=float(position), window=window,
                        marks=dict(ORIENTATION_MARKS[view]), overlay_pixels=int(covered.sum()),
                        lesion_pixels=int(lesion_px.sum()))
