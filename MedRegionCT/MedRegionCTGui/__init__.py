"""Qt glue of the MedRegionCT Slicer module, one concept a file (as SlicerNNUnet does):

- :mod:`.bootstrap`: supported Slicer/Python versions and where the library comes from (standard library only);
- :mod:`.install`: installing the Python packages the library still needs, after the user agrees;
- :mod:`.jobs`: background work polled from the GUI thread, so MRML is only touched there;
- :mod:`.panel`: the dockable report panel;
- :mod:`.widget`: the module panel, forwarding every decision to the Qt-free
  ``MedRegionCTLib.slicer_mrml.controller.ModuleController``.

Nothing here is imported before :mod:`.bootstrap` has checked the versions, and the files keep to Python 3.9
syntax so that an old Slicer reaches that check and says what is wrong instead of failing on a syntax error.
"""
