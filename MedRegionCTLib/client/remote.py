"""``RemoteReporter``: the report engine that asks a MedRegionCT report server (``pipeline.analyze(...,
reporter="server:URL")``, ``medregionct report --server URL``)."""

from __future__ import annotations

from ..errors import InputError
from ..report.document import ASSESSED, NOT_ASSESSED, Evidence, RegionReport, Sentence
from ..report.labeler import split_sentences
from .client import ReportClient


def case_from_report_case(case) -> dict:
    """A ReportCase -> the client's case mapping: the CT, region masks, names and the measure layer's attribute
    sentences (``measurements.sentences``: region key -> list of sentences). No identifiers are taken."""
    sentences = getattr(case.measurements, "sentences", None) or {}
    return {"volume": case.volume,
            "regions": {r.key: r.mask for r in case.regions},
            "names": {r.key: r.region.name for r in case.regions},
            "attributes": {key: list(value) for key, value in sentences.items()
                           if key in {r.key for r in case.regions}}}


class RemoteReporter:
    """Region paragraphs from a report server; one RegionReport per schema region, schema order."""

    name = "server"

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0, retries: int = 4,
                 backoff: float = 0.5, client: ReportClient | None = None, **client_options):
        self.client = client or ReportClient(url, api_key=api_key, timeout=timeout, retries=retries,
                                             backoff=backoff, **client_options)
        self.url = self.client.url

    def settings(self) -> dict:
        out = {"url": self.url}
        info = self.client._info  # recorded when known; settings() never calls the server
        if info:
            out.update({"model_version": info["model"]["version"], "schema": info["schema"]["name"],
                        "server_version": info.get("server_version")})
        return out

    def write(self, case, progress=None, cancel=None) -> list[RegionReport]:
        info = self.client.model_info()
        served = info["schema"]["name"]
        schema = getattr(case.schema, "name", None)
        if schema is not None and schema != served:
            raise InputError(f"the report server at {self.url} reports on schema {served!r}, but this case was built "
                             f"with {schema!r}; analyse it with schema={served!r}.")
        payload = case_from_report_case(case)
        if info["model"].get("kind") == "llm":  # a text-only LLM server writes from the measured facts
            from ..report.llm_writer import measured_reference, region_facts

            facts = region_facts(case, measured_reference(case))
            payload["attributes"] = {key: "\n".join(lines) for key, lines in facts.items() if lines}
        result = self.client.report(payload, progress=progress, cancel=cancel)
        paragraphs = result.get("regions", {})
        out = []
        for region in case.regions:
            key = region.key
            evidence = Evidence(masks=[f"region:{key}"])
            text = (paragraphs.get(key) or {}).get("paragraph", "").strip()
            if text:
                sentences = [Sentence(text=s, evidence=Evidence(masks=[f"region:{key}"]))
                             for s in split_sentences(text)]
                out.append(RegionReport(key=key, name=region.region.name, status=ASSESSED, sentences=sentences,
                                        evidence=evidence))
            else:
                out.append(RegionReport(key=key, name=region.region.name, status=NOT_ASSESSED, evidence=evidence))
        return out
