"""DICOM plugin: Slicer's DICOM browser opens our findings SR (and our SEGs) with the CXRXAI module.

Registered by this hidden module, as Slicer's own plugins are. It claims only CXR-XAI objects, with a
higher confidence than the generic TID 1500 and SEG plugins (CXRXAILib.plugin), because the SEG loader
goes through dcmqi, which cannot read a SEG of a projection radiograph (dcmqi issue 319): our plugin
reads our SEGs itself and puts the maps on the grid of the radiograph volume Slicer loads for the CR / DX.
"""

import slicer
from DICOMLib import DICOMLoadable, DICOMPlugin
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModule


class CXRXAIDICOMPluginClass(DICOMPlugin):
    def __init__(self):
        super().__init__()
        self.loadType = _("CXR-XAI results")
        self.tags["Manufacturer"] = "0008,0070"
        self.tags["Modality"] = "0008,0060"
        self.tags["SOPInstanceUID"] = "0008,0018"

    def examineFiles(self, files):
        from CXRXAILib.matching import read_headers
        from CXRXAILib.plugin import examine

        loadables = []
        for claim in examine(read_headers(files)):
            loadable = DICOMLoadable()
            loadable.files = [claim.file]
            loadable.name = claim.name
            loadable.tooltip = _("Findings and heatmaps in the CXR-XAI module")
            loadable.selected = claim.kind == "findings"
            loadable.confidence = claim.confidence
            loadable.cxrxaiKind = claim.kind
            loadables.append(loadable)
        return loadables

    def load(self, loadable):
        """Load the radiograph the results refer to, then show the results in the CXRXAI module."""
        from CXRXAILib.matching import read_headers, result_sets
        from DICOMLib import DICOMUtils

        database = slicer.dicomDatabase
        header = read_headers(loadable.files)[0]
        study = str(header.StudyInstanceUID)
        files = [f for series in database.seriesForStudy(study) for f in database.filesForSeries(series)]
        headers = read_headers(files)
        sets = result_sets(headers)
        if loadable.cxrxaiKind == "findings":
            sets = [s for s in sets if s.sr in loadable.files]
        else:  # a SEG: the newest result set that lists it
            uid_of = {str(h.filename): str(h.SOPInstanceUID) for h in headers}
            uid = str(header.SOPInstanceUID)
            sets = [s for s in sets if any(uid_of.get(path) == uid for path in s.segmentations)]
        if not sets:
            slicer.util.errorDisplay(_("The SR that lists these results is not in the DICOM database."))
            return False
        chosen = sets[0]
        source = next((h for h in headers if str(h.SOPInstanceUID) == chosen.source_sop_instance_uid), None)
        volume = None
        if source is not None:
            nodeIds = DICOMUtils.loadSeriesByUID([str(source.SeriesInstanceUID)])
            volume = slicer.mrmlScene.GetNodeByID(nodeIds[0]) if nodeIds else None
        slicer.util.selectModule("CXRXAI")
        widget = slicer.modules.CXRXAIWidget
        if volume is not None:
            widget.ui.inputVolumeSelector.setCurrentNode(volume)
        widget.setResultSets(sets)
        return True


class CXRXAIDICOMPlugin(ScriptedLoadableModule):
    """Hidden module that registers the plugin with the DICOM module."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        parent.title = "CXR-XAI DICOM Plugin"
        parent.categories = ["Developer Tools.DICOM Plugins"]
        parent.contributors = ["CXR-XAI developers"]
        parent.helpText = _(
            "Opens CXR-XAI findings SRs and heatmap SEGs from the DICOM browser with the CXR-XAI module."
        )
        parent.acknowledgementText = ""
        parent.hidden = True
        if not hasattr(slicer.modules, "dicomPlugins"):
            slicer.modules.dicomPlugins = {}
        slicer.modules.dicomPlugins["CXRXAIDICOMPlugin"] = CXRXAIDICOMPluginClass
