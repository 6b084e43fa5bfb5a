"""Report renderers: Markdown, one self-contained HTML page with key images, DICOM SR (TID 1500) and DICOM SEG.

JSON is :meth:`Report.to_json`. The DICOM writers need highdicom (``pip install MedRegionCTLib[dicom]``) and
the headers of the CT's DICOM series (:func:`read_dicom_headers`).
"""

from .dicom_seg import write_dicom_seg
from .dicom_source import read_dicom_headers
from .dicom_sr import write_dicom_sr
from .html import to_html
from .key_images import KeyImage, KeyImageMaker, window_for
from .markdown import to_markdown

read_source_datasets = read_dicom_headers  # the name pipeline.outputs calls

__all__ = ["KeyImage", "KeyImageMaker", "read_dicom_headers", "read_source_datasets", "to_html", "to_markdown",
           "window_for", "write_dicom_seg", "write_dicom_sr"]

