"""The dockable report panel: the header (which segmentation ran and why, scope), the contradictions, the
impression and one clickable paragraph per region; Copy and Export (JSON, Markdown, HTML, DICOM SR).

It holds the last result as the controller keeps it (report, measurements, node IDs): no full-grid arrays.
What an export needs from the scene (the CT, the region masks for key images) is read back from the nodes."""

from __future__ import annotations

import os
from types import SimpleNamespace

import qt
import slicer
from slicer.i18n import tr as _

EXPORT_FORMATS = (("json", "Report JSON (*.json)"), ("md", "Markdown (*.md)"), ("html", "HTML page (*.html)"),
                  ("dcm", "DICOM SR (*.dcm)"))


class ReportPanel:
    def __init__(self):
        self.result = None
        self.dock = qt.QDockWidget(_("MedRegionCT report"))
        self.dock.objectName = "MedRegionCTReportPanel"
        content = qt.QWidget()
        layout = qt.QVBoxLayout(content)
        self.browser = qt.QTextBrowser()
        self.browser.setOpenLinks(False)
        self.browser.connect("anchorClicked(QUrl)", self.onAnchorClicked)
        layout.addWidget(self.browser)
        row = qt.QHBoxLayout()
        for text, slot in ((_("Copy"), self.copy), (_("Export..."), self.onExport)):
            button = qt.QPushButton(text)
            button.connect("clicked()", slot)
            row.addWidget(button)
        layout.addLayout(row)
        self.dock.setWidget(content)
        self.mainWindow = slicer.util.mainWindow()
        if self.mainWindow:
            self.mainWindow.addDockWidget(qt.Qt.RightDockWidgetArea, self.dock)

    def cleanup(self):
        """Take the dock out of the main window and delete it (module cleanup or reload)."""
        if self.mainWindow:
            self.mainWindow.removeDockWidget(self.dock)
        self.dock.hide()
        self.dock.setParent(None)
        self.dock.deleteLater()
        self.result = None

    def setResult(self, result):
        """``result``: the controller's LastResult."""
        from MedRegionCTLib.slicer_mrml import report_panel_html

        self.result = result
        self.browser.setHtml(report_panel_html(result.report, result.colors, impression_title=_("Impression")))
        self.dock.show()

    def paragraphs(self):
        """The panel's text, one entry per block (what the self-test reads)."""
        return [line for line in self.browser.toPlainText().splitlines() if line.strip()]

    def node(self, nodeId):
        return slicer.mrmlScene.GetNodeByID(nodeId) if nodeId else None

    def onAnchorClicked(self, url):
        from MedRegionCTLib.slicer_mrml import region_key_from_link

        key = region_key_from_link(self.result.report, url.toString())
        if key is not None:
            self.centerOnRegion(key)

    def centerOnRegion(self, key):
        """Show region ``key``'s segment and centre the slice views on it; returns the RAS point (or None)."""
        from MedRegionCTLib import slicer_mrml

        node = self.node(self.result.segmentation_id)
        segmentId = slicer_mrml.segment_id_of_region(node, key) if node else None
        point = slicer_mrml.segment_target_ras(node, segmentId) if segmentId else None
        if point is None:
            slicer.util.showStatusMessage(_("This region is empty (not in the scanned range)."), 3000)
            return None
        display = node.GetDisplayNode()
        if display:
            display.SetVisibility(True)
            display.SetSegmentVisibility(segmentId, True)
        slicer.modules.markups.logic().JumpSlicesToLocation(*[float(v) for v in point], True)
        return point

    def copy(self):
        qt.QApplication.clipboard().setText(self.result.report.text())

    def onExport(self):
        filters = ";;".join(_(f) for _k, f in EXPORT_FORMATS)
        path = qt.QFileDialog.getSaveFileName(self.dock, _("Export the report"), "report.html", filters)
        if path:
            with slicer.util.tryWithErrorDisplay(_("The report could not be exported."), waitCursor=True):
                self.exportTo(path)

    def sceneData(self):
        """The CT and the region masks, read back from the scene for key images (None when the nodes are gone)."""
        from MedRegionCTLib import slicer_mrml

        volumeNode, segmentationNode = self.node(self.result.volume_id), self.node(self.result.segmentation_id)
        if volumeNode is None or segmentationNode is None:
            return None
        volume = slicer_mrml.node_to_volume(volumeNode)
        return SimpleNamespace(volume=volume, measurements=self.result.measurements,
                               regions=slicer_mrml.region_masks_from_segmentation(segmentationNode, volume))

    def exportTo(self, path, fmt=None):
        """Write the report as "json", "md", "html" or "dcm" (DICOM SR); from the file suffix by default."""
        from MedRegionCTLib.slicer_mrml import export_report
        from MedRegionCTLib.slicer_mrml.requirements import DICOM_SR

        from .install import ensureRequirements

        fmt = fmt or os.path.splitext(path)[1].lower().lstrip(".")
        datasets = None
        if fmt == "dcm":
            ensureRequirements(DICOM_SR, _("DICOM SR export"))
            datasets = self.sourceFiles()
        data = self.sceneData() if fmt == "html" else SimpleNamespace(measurements=self.result.measurements)
        return export_report(self.result.report, path, fmt, analysis=data, dicom_datasets=datasets)

    def sourceFiles(self):
        """Files of the DICOM series the CT was loaded from (DICOM SR references it)."""
        node = self.node(self.result.volume_id)
        uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split() if node else []
        return [slicer.dicomDatabase.fileForInstance(uid) for uid in uids] if slicer.dicomDatabase else []
