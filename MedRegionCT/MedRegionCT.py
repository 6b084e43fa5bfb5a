"""MedRegionCT: the 3D Slicer scripted module (thin glue over MedRegionCTLib).

The full module (widget, dockable report panel, logic, self-test) is built in a later step; this file
registers the module and its metadata so the extension builds and loads.
"""

from slicer.ScriptedLoadableModule import ScriptedLoadableModule


class MedRegionCT(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "MedRegionCT"
        self.parent.categories = ["Radiology"]
        self.parent.dependencies = []
        self.parent.contributors = ["MedRegionCT developers"]
        self.parent.helpText = (
            "Region-by-region chest CT reports: segment a chest CT into anatomical regions, measure each region "
            "and write one paragraph per region."
        )
        self.parent.acknowledgementText = "Built on MedRegionCTLib (Apache-2.0)."
