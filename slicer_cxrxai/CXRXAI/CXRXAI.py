"""CXR-XAI: review chest radiograph findings and their layer-wise heatmaps in 3D Slicer.

Thin Slicer glue: everything that needs no Slicer (reading our SR / SEG, ordering, colours, thresholds,
geometry, study matching) lives in CXRXAILib and is tested by pytest in the cxrxai repository. Nothing
heavy is imported at module load; torch only when "Run locally" is used.
"""

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

MODEL_REQUIREMENTS = "model-requirements.txt"  # what "Run locally" installs beside PyTorch, after asking
SUPPORTED_SLICER = (5, 12)  # Python 3.12 with pydicom 3 and highdicom: what CXRXAILib and the core need
COMPARE_LAYOUT_ID = 20260701  # a layout number of our own, registered on first use


@parameterNodeWrapper
class CXRXAIParameterNode:
    """The review a saved scene restores: the radiograph, its results (by their SR file), the finding,
    method and layer on show, and how the map is drawn. The widgets bound by name carry the
    SlicerParameterName property in the .ui file."""

    radiograph: vtkMRMLScalarVolumeNode
    resultsSR: str = ""
    finding: str = ""
    method: str = ""
    layer: str = ""
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    threshold: Annotated[float, WithinRange(0.0, 0.95)] = 0.2
    lungMask: bool = False
    showAnatomy: bool = True
    compareViews: Annotated[int, WithinRange(2, 6)] = 3


class CXRXAI(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("CXR-XAI")
        self.parent.categories = [_("Explainable AI")]
        self.parent.dependencies = []
        self.parent.contributors = ["CXR-XAI developers"]
        self.parent.helpText = _(
            "Review the findings a CXR-XAI node reported for a chest radiograph (DICOM SR TID 1500) and "
            "where the model looked: Grad-CAM and related heatmaps per finding, from each encoder level "
            "through the bottleneck to each decoder level, with the lung and heart segmentation and the "
            "cardiothoracic ratio. AI-generated results: not for diagnostic use."
        )
        self.parent.acknowledgementText = _("Built on highdicom, pydicom and MONAI.")


class CXRXAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.results = None  # CXRXAILib.catalogue.RadiographResults on display
        self.resultSets = []
        self.localRun = None  # CXRXAILib.local.LocalRun while one runs
        self.localRunDialog = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._quiet = False  # while the widget itself clears or restores: selections are not recorded
        self.supported = True

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        running = (slicer.app.majorVersion, slicer.app.minorVersion)
        if running < SUPPORTED_SLICER:
            self.supported = False
            self.layout.addWidget(
                qt.QLabel(
                    _("CXR-XAI needs 3D Slicer {needed} or later; this is {running}.").format(
                        needed=".".join(map(str, SUPPORTED_SLICER)), running=".".join(map(str, running))
                    )
                )
            )
            return
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CXRXAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CXRXAILogic()

        self.ui.findingsTable.setColumnCount(4)
        self.ui.findingsTable.setHorizontalHeaderLabels(
            [_("Finding"), _("Probability"), _("Threshold"), _("Decision")]
        )
        self.ui.findingsTable.horizontalHeader().setSectionResizeMode(0, qt.QHeaderView.Stretch)
        for slider in (self.ui.opacitySlider, self.ui.thresholdSlider):
            slider.tracking = False  # redraw when the slider is released, not at every step of a drag
        self.ui.callingAETitleEdit.text = "CXRXAI"

        self.ui.loadFromDatabaseButton.connect("clicked(bool)", self.onLoadFromDatabase)
        self.ui.loadFolderButton.connect("clicked(bool)", self.onLoadFolder)
        self.ui.queryPacsButton.connect("clicked(bool)", self.onQueryPacs)
        self.ui.resultSetComboBox.connect("currentIndexChanged(int)", self.onResultSetChanged)
        self.ui.findingsTable.connect("itemSelectionChanged()", self.onFindingChanged)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        self.ui.structureComboBox.connect("currentIndexChanged(int)", self.onStructureChanged)
        self.ui.layerComboBox.connect("currentIndexChanged(int)", self.updateHeatmap)
        self.ui.opacitySlider.connect("valueChanged(double)", self.updateHeatmap)
        self.ui.thresholdSlider.connect("valueChanged(double)", self.updateHeatmap)
        self.ui.lungMaskCheckBox.connect("toggled(bool)", self.updateHeatmap)
        self.ui.showAnatomyCheckBox.connect("toggled(bool)", self.onShowAnatomy)
        self.ui.compareLayersButton.connect("clicked(bool)", self.onCompareLayers)
        self.ui.showPagesButton.connect("clicked(bool)", self.onShowPages)
        self.ui.runLocallyButton.connect("clicked(bool)", self.onRunLocally)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self.initializeParameterNode()
        self.onInputChanged()

    def cleanup(self):
        self.removeObservers()
        if self.localRun is not None:
            self.localRun.cancel()

    # -- the parameter node: what a saved scene restores ----------------------------------------------

    def enter(self):
        if not self.supported:
            return
        self.initializeParameterNode()
        self.restoreReview()

    def exit(self):
        if self._parameterNode is not None and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def initializeParameterNode(self):
        if self.supported:
            self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode):
        # the first tag connectGui hands out is 0: compare with None
        if self._parameterNode is not None and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
        self._parameterNode = parameterNode
        if parameterNode:
            self._parameterNodeGuiTag = parameterNode.connectGui(self.ui)

    def remember(self, **values):
        """Record the review's selections in the parameter node (nothing while one is being restored)."""
        if self._parameterNode is not None and not self._quiet:
            for name, value in values.items():
                setattr(self._parameterNode, name, value or "")

    def restoreReview(self):
        """After a saved scene is loaded: its results, on its radiograph, with the finding, method and
        layer it showed."""
        node = self._parameterNode
        if self.results is not None or not node or not node.resultsSR or not node.radiograph:
            return
        saved = (node.finding, node.method, node.layer)
        self._quiet = True
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not restore the review."), waitCursor=True):
                sets = self.logic.resultSetsOfSR(node.radiograph, node.resultsSR)
                if not sets:
                    missing = _("The saved review's results ({path}) are not available.")
                    self.ui.statusLabel.text = missing.format(path=node.resultsSR)
                    return
                self.setResultSets(sets)
                self.selectReview(*saved)
        finally:
            self._quiet = False

    def selectReview(self, finding, method, layer):
        names = [f.name for f in self.results.findings] if self.results else []
        if finding in names:
            self.ui.findingsTable.selectRow(names.index(finding))
        for combo, value in ((self.ui.methodComboBox, method), (self.ui.layerComboBox, layer)):
            index = combo.findData(value)
            if index >= 0:
                combo.setCurrentIndex(index)

    def onSceneStartClose(self, caller, event):
        """A closing scene takes the review's nodes and parameter node with it: forget the results."""
        self.setParameterNode(None)
        self.clearReview()
        self.setResultSets([])

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onSceneEndImport(self, caller, event):
        """A scene was loaded: take up its parameter node and restore its review."""
        if self.parent.isEntered:
            self.initializeParameterNode()
            self.restoreReview()

    # -- loading --------------------------------------------------------------------------------------

    def onInputChanged(self, node=None):
        volume = self.ui.inputVolumeSelector.currentNode()
        # the parameter node first: a later write of it would put its older radiograph back in the selector
        if self._parameterNode is not None and self._parameterNode.radiograph is not volume:
            self._parameterNode.radiograph = volume
        hasVolume = volume is not None
        for button in (self.ui.loadFromDatabaseButton, self.ui.queryPacsButton, self.ui.runLocallyButton):
            button.enabled = hasVolume
        if self.results is not None:  # the results on show belong to the previous radiograph
            self.clearReview()
            self.ui.statusLabel.text = _("Load the results of the selected radiograph.")

    def clearReview(self):
        """No results on show: the table, the choices and what the review drew, emptied without recording
        the emptied choices in the parameter node."""
        self._quiet = True
        try:
            self.results = None
            if self.logic is not None:
                self.logic.review.clear()
            combos = (self.ui.methodComboBox, self.ui.structureComboBox, self.ui.layerComboBox)
            widgets = (self.ui.findingsTable, *combos)
            for widget in widgets:
                widget.blockSignals(True)
            self.ui.findingsTable.setRowCount(0)
            for combo in combos:
                combo.clear()
            for widget in widgets:
                widget.blockSignals(False)
        finally:
            self._quiet = False

    def onLoadFromDatabase(self):
        with slicer.util.tryWithErrorDisplay(
            _("Could not load the results from the DICOM database."), waitCursor=True
        ):
            self.setResultSets(self.logic.resultSetsFromDatabase(self.ui.inputVolumeSelector.currentNode()))

    def onLoadFolder(self):
        with slicer.util.tryWithErrorDisplay(
            _("Could not load the results from the folder."), waitCursor=True
        ):
            volume, sets = self.logic.resultSetsFromFolder(
                self.ui.folderPathEdit.currentPath, self.ui.inputVolumeSelector.currentNode()
            )
            if volume is not None:
                self.ui.inputVolumeSelector.setCurrentNode(volume)
            self.setResultSets(sets)

    def onQueryPacs(self):
        with slicer.util.tryWithErrorDisplay(
            _("Could not retrieve the results from the PACS."), waitCursor=True
        ):
            volume = self.ui.inputVolumeSelector.currentNode()
            self.setResultSets(
                self.logic.resultSetsFromPacs(
                    volume, self.ui.pacsAddressEdit.text.strip(), self.ui.callingAETitleEdit.text.strip()
                )
            )

    def setResultSets(self, sets):
        self.resultSets = sets
        combo = self.ui.resultSetComboBox
        combo.blockSignals(True)
        combo.clear()
        for resultSet in sets:
            combo.addItem(f"{resultSet.model} ({resultSet.created[:8] or 'undated'})")
        combo.blockSignals(False)
        if not sets:
            self.ui.statusLabel.text = _("No CXR-XAI results found for this radiograph.")
            return
        missing = sum(len(s.missing) for s in sets)
        self.ui.statusLabel.text = _("{count} result set(s) found.").format(count=len(sets)) + (
            " " + _("{missing} listed object(s) are not available.").format(missing=missing)
            if missing
            else ""
        )
        self.onResultSetChanged(0)

    def onResultSetChanged(self, index):
        if not 0 <= index < len(self.resultSets):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not read the results."), waitCursor=True):
            from CXRXAILib.matching import load

            self.showResults(load(self.resultSets[index]))
            self.remember(resultsSR=self.resultSets[index].sr)

    def onRunLocally(self):
        """Explain the selected radiograph in a process of its own, with a progress dialog that can cancel
        it; the results show when it finishes."""
        from CXRXAILib.local import missing_packages

        if self.localRun is not None:  # one run at a time
            return
        with slicer.util.tryWithErrorDisplay(_("Running the model locally failed."), waitCursor=True):
            missing = missing_packages()
            if missing and not self.logic.installLocalRun(missing, self.resourcePath(MODEL_REQUIREMENTS)):
                return
            bundle = self.ui.bundlePathEdit.currentPath or None
            volume = self.ui.inputVolumeSelector.currentNode()
            run = self.logic.startLocalRun(volume, bundle, self.resourcePath(""))
            dialog = slicer.util.createProgressDialog(
                labelText=_("Running the model locally..."), maximum=100
            )
            dialog.windowModality = qt.Qt.WindowModal
            dialog.canceled.connect(run.cancel)
            self.localRun, self.localRunDialog = run, dialog
            self.ui.runLocallyButton.enabled = False
            qt.QTimer.singleShot(500, lambda: self.checkLocalRun(run, dialog))

    def checkLocalRun(self, run, dialog):
        if run.poll():
            dialog.labelText = run.stage
            dialog.value = run.percent
            qt.QTimer.singleShot(500, lambda: self.checkLocalRun(run, dialog))
            return
        dialog.close()
        self.localRun = self.localRunDialog = None
        self.ui.runLocallyButton.enabled = self.ui.inputVolumeSelector.currentNode() is not None
        if run.cancelled:
            self.ui.statusLabel.text = _("The local run was cancelled.")
        elif not run.succeeded:
            slicer.util.errorDisplay(_("Running the model locally failed: {why}").format(why=run.failure))
        else:
            failed = _("Could not read the local run's results.")
            with slicer.util.tryWithErrorDisplay(failed, waitCursor=True):
                self.showResults(run.results())
                self.remember(resultsSR="")  # a local run's results are not kept: nothing to restore
                self.ui.statusLabel.text = _("Explained locally with {model}.").format(
                    model=self.results.model
                )

    # -- display --------------------------------------------------------------------------------------

    def showResults(self, results):
        self.results = results
        table = self.ui.findingsTable
        table.blockSignals(True)
        table.clearSelection()  # so that selecting the first mapped finding below always signals
        table.setRowCount(len(results.findings))
        for row, finding in enumerate(results.findings):
            colour = qt.QColor(*finding.colour)
            cells = (finding.name, f"{finding.probability:.3f}", f"{finding.threshold:.2f}", finding.decision)
            for column, text in enumerate(cells):
                item = qt.QTableWidgetItem(text)
                item.setFlags(qt.Qt.ItemIsSelectable | qt.Qt.ItemIsEnabled)
                item.setBackground(qt.QBrush(colour))
                if finding.present:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                table.setItem(row, column, item)
        table.blockSignals(False)
        self.ui.ctrLabel.text = _("Cardiothoracic ratio: {ctr}").format(
            ctr=f"{results.ctr:.2f}" if results.ctr is not None else _("not measured")
        )
        mapped = results.mapped_findings()
        if mapped:
            table.selectRow([f.name for f in results.findings].index(mapped[0]))
        else:  # nothing to select: the previous results' map and choices go
            self.onFindingChanged()
        self.onShowAnatomy(self.ui.showAnatomyCheckBox.checked)

    def selectedFinding(self):
        rows = {index.row() for index in self.ui.findingsTable.selectedIndexes()}
        if not rows or self.results is None:
            return None
        return self.results.findings[min(rows)].name

    def onFindingChanged(self):
        from CXRXAILib.display import method_name

        if self.results is None:
            return
        finding = self.selectedFinding()
        self.remember(finding=finding)
        combo = self.ui.methodComboBox
        combo.blockSignals(True)
        combo.clear()
        for method in self.results.methods(finding) if finding else []:
            combo.addItem(method_name(method), method)
        combo.blockSignals(False)
        if combo.count == 0:
            self.ui.statusLabel.text = (
                _("No heatmap of {finding} in these results.").format(finding=finding)
                if finding
                else _("These results have no heatmaps.")
            )
            for other in (self.ui.structureComboBox, self.ui.layerComboBox):
                other.blockSignals(True)
                other.clear()
                other.blockSignals(False)
            self.logic.review.hide_heatmap()
            return
        self.onMethodChanged()

    def selectedStructure(self):
        """For Seg-Grad-CAM, which explains the segmentation: the structure chosen; else None."""
        return self.ui.structureComboBox.currentText if self.ui.structureComboBox.enabled else None

    def onMethodChanged(self, index=None):
        from CXRXAILib.catalogue import SEGMENTATION_METHOD

        if self.results is None:
            return
        method = self.ui.methodComboBox.currentData
        self.remember(method=method)
        structures = self.ui.structureComboBox
        structures.blockSignals(True)
        structures.clear()
        structures.enabled = method == SEGMENTATION_METHOD
        if structures.enabled:
            structures.addItems(self.results.structures())
            structures.setCurrentIndex(structures.count - 1)
        structures.blockSignals(False)
        self.onStructureChanged()

    def onStructureChanged(self, index=None):
        from CXRXAILib.display import layer_name

        if self.results is None:
            return
        finding, method = self.selectedFinding(), self.ui.methodComboBox.currentData
        structure = self.selectedStructure()
        combo = self.ui.layerComboBox
        combo.blockSignals(True)
        combo.clear()
        for layer in self.results.layers(finding, method, structure):
            combo.addItem(layer_name(layer), layer)
        default = self.results.default_layer(finding, method, structure)
        combo.setCurrentIndex(max(0, combo.findData(default)))
        combo.blockSignals(False)
        self.updateHeatmap()

    def updateHeatmap(self, *unused):
        finding, method = self.selectedFinding(), self.ui.methodComboBox.currentData
        layer = self.ui.layerComboBox.currentData
        if self.results is None or not (finding and method and layer):
            return
        self.remember(layer=layer)
        masked = self.ui.lungMaskCheckBox.checked
        with slicer.util.tryWithErrorDisplay(_("Could not show the heatmap."), waitCursor=True):
            self.logic.review.show_heatmap(
                self.results,
                self.results.heatmap(finding, method, layer, masked, self.selectedStructure()),
                self.ui.inputVolumeSelector.currentNode(),
                self.ui.thresholdSlider.value,
                self.ui.opacitySlider.value,
            )

    def onShowPages(self):
        if self.results is None or not self.results.pictures:
            self.ui.statusLabel.text = _("These results have no Secondary Capture pages.")
            return
        with slicer.util.tryWithErrorDisplay(_("Could not load the result pages."), waitCursor=True):
            self.logic.showPictures(self.results.pictures)

    def onShowAnatomy(self, show):
        """The lungs and heart, the cardiothoracic ratio's two widths and the presentation state's
        outlines, shown or hidden together."""
        if self.results is None:
            return
        volume = self.ui.inputVolumeSelector.currentNode()
        with slicer.util.tryWithErrorDisplay(_("Could not show the anatomy."), waitCursor=True):
            self.logic.review.show_anatomy(self.results, volume, show)
            self.logic.review.show_ctr(self.results, volume, show)
            self.logic.review.show_outlines(self.results, self.results.outlines if show else [], volume)

    def onCompareLayers(self):
        finding, method = self.selectedFinding(), self.ui.methodComboBox.currentData
        if self.results is None or not (finding and method):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not build the layer comparison."), waitCursor=True):
            structure = self.selectedStructure()
            layers = self.results.comparison(finding, method, self.ui.compareViewsSpinBox.value, structure)
            masked = self.ui.lungMaskCheckBox.checked
            self.logic.showComparison(
                self.results,
                [
                    (layer, self.results.heatmap(finding, method, layer, masked, structure))
                    for layer in layers
                ],
                self.ui.inputVolumeSelector.currentNode(),
                self.ui.thresholdSlider.value,
                self.ui.opacitySlider.value,
            )


class CXRXAILogic(ScriptedLoadableModuleLogic):
    """Everything the widget does, callable without it (the self-test and Slicer's Python console). What
    is drawn into the scene is CXRXAILib.review's ReviewLogic (`self.review`), which needs no Qt and is
    tested on Slicer's MRML outside the application; this class adds the DICOM database, the PACS, the
    local run and the layouts."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        from CXRXAILib.review import ReviewLogic

        self.review = ReviewLogic(slicer.mrmlScene)

    # -- where results come from ----------------------------------------------------------------------

    @staticmethod
    def instanceUID(volumeNode):
        from CXRXAILib.review import instance_uid

        return instance_uid(volumeNode)

    def resultSetsFromDatabase(self, volumeNode):
        """Our result sets in Slicer's DICOM database for the radiograph a volume was loaded from."""
        from CXRXAILib.matching import read_headers, results_for

        uid = self.instanceUID(volumeNode)
        if uid is None:
            raise ValueError(
                _("This volume was not loaded from the DICOM database; load the results from a folder.")
            )
        database = slicer.dicomDatabase
        study = database.instanceValue(uid, "0020,000D")
        files = [f for series in database.seriesForStudy(study) for f in database.filesForSeries(series)]
        return results_for(uid, read_headers(files))

    def getParameterNode(self):
        return CXRXAIParameterNode(super().getParameterNode())

    def resultSetsOfSR(self, volumeNode, srPath):
        """The result set of one SR file for the radiograph (a saved review's): found in the DICOM
        database when the radiograph came from it, else in the SR's folder."""
        from CXRXAILib.matching import read_headers, results_for

        uid = self.instanceUID(volumeNode)
        if uid is None or not os.path.isfile(srPath):
            return []
        folders = [Path(srPath).parent]
        try:
            sets = self.resultSetsFromDatabase(volumeNode)
        except ValueError:  # not from the database
            sets = []
        sets = sets or results_for(uid, read_headers(folders))
        return [s for s in sets if os.path.samefile(s.sr, srPath)]

    def resultSetsFromFolder(self, folder, volumeNode=None):
        """(radiograph volume, result sets) from a folder. With a radiograph selected, only its results
        (never another image's maps over it); without one, the newest results' radiograph is loaded from
        the folder when it is there."""
        from CXRXAILib.matching import radiographs, read_headers, result_sets

        headers = read_headers([folder])
        sets = result_sets(headers)
        if volumeNode is not None:
            uid = self.instanceUID(volumeNode)
            return volumeNode, [s for s in sets if s.source_sop_instance_uid == uid]
        if not sets:
            return None, []
        source = next(
            (h for h in radiographs(headers) if str(h.SOPInstanceUID) == sets[0].source_sop_instance_uid),
            None,
        )
        if source is None:
            raise ValueError(_("The folder has results but not their radiograph; load the radiograph first."))
        volume = slicer.util.loadVolume(source.filename)
        volume.SetAttribute("DICOM.instanceUIDs", str(source.SOPInstanceUID))
        return volume, [s for s in sets if s.source_sop_instance_uid == sets[0].source_sop_instance_uid]

    def resultSetsFromPacs(self, volumeNode, address, callingAETitle):
        """Retrieve the radiograph's study (the radiograph and our results) from the PACS into the DICOM
        database with Slicer's own DICOM networking (C-GET, as Slicer's tests do), then find our results
        there. Nothing to install: no networking package of ours is involved."""
        import ctk

        from cxrxai.dicom.peer import Peer

        uid = self.instanceUID(volumeNode)
        if uid is None:
            raise ValueError(_("This volume was not loaded from DICOM, so its study is unknown."))
        study = slicer.dicomDatabase.instanceValue(uid, "0020,000D")
        peer = Peer.parse(address)
        retrieve = ctk.ctkDICOMRetrieve()
        retrieve.setDatabase(slicer.dicomDatabase)
        retrieve.callingAETitle = callingAETitle
        retrieve.calledAETitle = peer.ae_title
        retrieve.host = peer.host
        retrieve.port = peer.port
        if not retrieve.getStudy(study):
            raise RuntimeError(
                _("{peer} did not return the study: check the address and that it knows {calling}.").format(
                    peer=address, calling=callingAETitle
                )
            )
        return self.resultSetsFromDatabase(volumeNode)

    def installLocalRun(self, missing, requirementsPath):
        """Ask, then install PyTorch through Slicer's PyTorch extension (a dependency of this one) and the
        model packages through slicer.packaging, which asks again before it installs."""
        from CXRXAILib.install import ensure_packages
        from CXRXAILib.local import NEEDED
        from slicer import packaging

        question = _("Running the model locally needs: {packages} (about 1 GB). Install now?").format(
            packages=", ".join(missing)
        )
        if not slicer.util.confirmOkCancelDisplay(question):
            return False
        if "PyTorch" in missing:
            import PyTorchUtils

            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False) is None:
                return False
        modules = [module for module in NEEDED if module != "torch"]
        return ensure_packages(packaging, requirementsPath, modules)

    def startLocalRun(self, volumeNode, bundle=None, resources=None):
        """A LocalRun of the radiograph's file with `bundle`, or the default bundle the extension ships."""
        import shutil

        from CXRXAILib.local import LocalRun, default_bundle

        uid = self.instanceUID(volumeNode)
        path = slicer.dicomDatabase.fileForInstance(uid) if uid else None
        if not path:
            storage = volumeNode.GetStorageNode()
            path = storage.GetFileName() if storage else None
        if not path or not os.path.isfile(path):
            raise ValueError(_("The radiograph's file is not available; load it from DICOM or from a file."))
        bundle = bundle or default_bundle(resources)
        if bundle is None:
            raise ValueError(_("No model bundle: choose a bundle folder."))
        python = shutil.which("PythonSlicer") or sys.executable
        return LocalRun(python, path, bundle, tempfile.mkdtemp(prefix="cxrxai-local-"))

    # -- display --------------------------------------------------------------------------------------

    def showPictures(self, paths):
        """The Secondary Capture pages (colour images) as volumes, the first one shown."""
        nodes = [slicer.util.loadVolume(path, {"singleFile": True, "show": False}) for path in paths]
        if nodes:
            slicer.util.setSliceViewerLayers(background=nodes[0], foreground=None, fit=True)
        return nodes

    def showComparison(self, results, layerMaps, referenceVolume, threshold=0.2, opacity=0.5):
        """One slice view per layer, side by side, each with the radiograph and that layer's map; the
        main views keep what they show."""
        from CXRXAILib.display import comparison_layout_xml
        from CXRXAILib.review import COMPARE_VIEW

        layoutManager = slicer.app.layoutManager()
        layoutNode = layoutManager.layoutLogic().GetLayoutNode()
        layoutId = COMPARE_LAYOUT_ID + len(layerMaps)
        if not layoutNode.IsLayoutDescription(layoutId):
            layoutNode.AddLayoutDescription(layoutId, comparison_layout_xml(len(layerMaps)))
        layoutManager.setLayout(layoutId)
        nodes = self.review.show_comparison(results, layerMaps, referenceVolume, threshold, opacity)
        # each view's foreground is named "CXRXAI heatmap <layer>", which the view's annotations show
        for number in range(1, len(layerMaps) + 1):
            view = layoutManager.sliceWidget(COMPARE_VIEW.format(number=number))
            view.sliceLogic().FitSliceToAll()
        return nodes


class CXRXAITest(ScriptedLoadableModuleTest):
    """Self-test on a synthetic study written by CXRXAILib.testdata (no model needed)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_CXRXAI_folder_heatmap_anatomy_comparison()

    def test_CXRXAI_folder_heatmap_anatomy_comparison(self):
        from CXRXAILib.matching import load
        from CXRXAILib.testdata import CARDIOMEGALY, write_test_study

        self.delayDisplay("Writing a synthetic study")
        folder = tempfile.mkdtemp(prefix="cxrxai-selftest-")
        paths = write_test_study(folder)
        logic = CXRXAILogic()
        radiograph, sets = logic.resultSetsFromFolder(folder)  # loads the results' radiograph too
        self.assertIsNotNone(radiograph)
        self.assertEqual(radiograph.GetAttribute("DICOM.instanceUIDs"), sets[0].source_sop_instance_uid)
        self.assertEqual(len(sets), 1)
        self.assertEqual(sets[0].sr, str(paths["sr"]))
        results = load(sets[0])
        self.assertEqual(results.findings[0].name, "Cardiomegaly")
        self.assertAlmostEqual(results.findings[0].probability, CARDIOMEGALY)

        layer = results.default_layer("Cardiomegaly", "gradcam")
        heatmap = results.heatmap("Cardiomegaly", "gradcam", layer)
        node = logic.review.show_heatmap(results, heatmap, radiograph, 0.3, 0.6)
        array = slicer.util.arrayFromVolume(node)
        self.assertEqual(array.shape, slicer.util.arrayFromVolume(radiograph).shape)
        self.assertAlmostEqual(float(array.max()), 1.0, places=2)
        self.assertEqual(node.GetDisplayNode().GetLowerThreshold(), 0.3)

        segmentation = logic.review.show_anatomy(results, radiograph)
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 3)

        nodes = logic.showComparison(
            results,
            [
                (layer, results.heatmap("Cardiomegaly", "gradcam", layer))
                for layer in results.comparison("Cardiomegaly", "gradcam", 3)
            ],
            radiograph,
        )
        self.assertEqual(len(nodes), 3)
        self.delayDisplay("CXR-XAI self-test passed")
