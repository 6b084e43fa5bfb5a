"""The local model as a report engine: a checkpoint folder on this machine, run through torch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import InputError
from ..report.reporter import ReportCase, attribute_text, reports_from_paragraphs
from .config import CONFIG_NAME


class ModelReporter:
    """``pipeline.analyze(..., reporter="model:DIR")``: generate each region's paragraph with a saved model.

    The model is loaded on first use and kept; ``device`` is "cpu", "cuda" or None (CUDA when available).
    """

    name = "model"

    def __init__(self, directory, device: str | None = None, llm_path=None, vision2d_path=None, model=None):
        self.directory = Path(directory).expanduser() if directory else None
        if model is None and (self.directory is None or not (self.directory / CONFIG_NAME).is_file()):
            raise InputError(f"{directory}: not a MedRegionCT model folder (no {CONFIG_NAME}); give a folder "
                             "written by save_pretrained or `medregionct train`.")
        self.device = device
        self.llm_path = llm_path
        self.vision2d_path = vision2d_path
        self._model = model

    @property
    def model(self):
        if self._model is None:
            import torch

            from .modeling import MedRegionModel

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._model = MedRegionModel.from_pretrained(self.directory, device=device, llm_path=self.llm_path,
                                                         vision2d_path=self.vision2d_path).eval()
        return self._model

    def settings(self) -> dict:
        config = self.model.config
        return {"model": str(self.directory) if self.directory else "in memory", "layout": config.prompt.layout,
                "use_attributes": config.prompt.use_attributes,
                "generation": dataclasses.asdict(config.generation)}

    def write(self, case: ReportCase, progress=None, cancel=None):
        masks = {r.key: r.mask for r in case.regions if r.mask.any()}
        if not masks:
            raise InputError("no region of the schema was found in this CT; check the segmentation.")
        model_case = {"volume": case.volume, "regions": masks,
                      "names": {r.key: r.region.name.lower() for r in case.regions},
                      "attributes": attribute_text(case)}
        generated = self.model.generate_reports([model_case], progress=progress, cancel=cancel)[0]
        return reports_from_paragraphs(case, {key: item["paragraph"] for key, item in generated.items()})
