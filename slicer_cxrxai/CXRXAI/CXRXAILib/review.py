"""The CXRXAI module's logic on MRML alone: the radiograph as a volume, the lungs and heart as segments, the
heat maps with their colour table and legend, the cardiothoracic ratio's two widths and the presentation
state's outlines as markups, and which slice views show what.

No Qt and no application: every call goes through the scene it is given and Slicer's module logics, so it
runs in Slicer and, in our tests, on Kitware's slicer-core wheel (Slicer's MRML and module logics without
the application). The widget (CXRXAI.py) adds the layouts, dialogs and corner labels around it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from CXRXAILib.catalogue import ANATOMY_ORDER, RadiographResults
from CXRXAILib.display import colour_table, display_range, ijk_to_ras, layer_name, volume_array
from CXRXAILib.presentation import Outline

HEATMAP_NODE = "CXRXAI heatmap"
COLOUR_NODE = "CXRXAI inferno"
ANATOMY_NODE = "CXRXAI lungs and heart"
CTR_NODES = {"heart": "CXRXAI heart width", "thorax": "CXRXAI thorax width"}
OUTLINE_NODE = "CXRXAI outline: {label}"
OUR_NODE_ATTRIBUTE = "CXRXAI.made"  # every node the review makes carries it, so closing a review finds them
INSTANCE_ATTRIBUTE = "DICOM.instanceUIDs"  # what Slicer's DICOM loader records on a volume it loads
ANATOMY_COLOURS = {
    "Right Lung": (0.35, 0.75, 0.95),
    "Left Lung": (0.35, 0.55, 0.95),
    "Heart": (0.95, 0.45, 0.45),
}
CTR_COLOUR = (1.0, 0.85, 0.2)
OUTLINE_COLOURS = {"ANATOMY": (0.3, 0.9, 0.9), "FINDINGS": (1.0, 0.6, 0.1)}
MAIN_VIEWS = ("Red",)  # the slice views the review draws in; a comparison has views of its own
COMPARE_VIEW = "CXRXAICompare{number}"


class WrongRadiographError(ValueError):
    """Results drawn over another radiograph than the one they were made for."""


def instance_uid(volume) -> str | None:
    uids = (volume.GetAttribute(INSTANCE_ATTRIBUTE) or "").split()
    return uids[0] if uids else None


class ReviewLogic:
    """Shows one radiograph's results in `scene`. Every node it makes is named "CXRXAI ..." and marked, is
    reused when shown again, and is removed by `clear`."""

    def __init__(self, scene) -> None:
        self.scene = scene

    # -- the radiograph ---------------------------------------------------------------------------------

    def radiograph_volume(self, path: str, name: str = "CXRXAI radiograph"):
        """A radiograph file as a scalar volume with the geometry Slicer's DICOM scalar-volume loader gives
        it (`display.ijk_to_ras`), its SOP Instance UID recorded as that loader records it. For a file
        outside the DICOM database (a folder of results)."""
        from pydicom import dcmread

        dataset = dcmread(path)
        pixels = _modality_values(dataset)
        node = self._node("vtkMRMLScalarVolumeNode", name)
        slicer.util.updateVolumeFromArray(node, volume_array(pixels))
        node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras(dataset)))
        node.SetAttribute(INSTANCE_ATTRIBUTE, str(dataset.SOPInstanceUID))
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        return node

    def check_radiograph(self, results: RadiographResults, volume) -> None:
        """Refuse to draw `results` over a volume of another radiograph: by SOP Instance UID where the volume
        has one, else by size (a volume loaded from a file without DICOM)."""
        if volume is None:
            raise WrongRadiographError("no radiograph selected: select the radiograph the results are for")
        uid = instance_uid(volume)
        if uid is not None and uid != results.source_sop_instance_uid:
            raise WrongRadiographError(
                f"these results are for radiograph {results.source_sop_instance_uid}, not for the selected "
                f"volume ({uid}): select that radiograph, or load the selected one's results"
            )
        shape = slicer.util.arrayFromVolume(volume).shape[1:]
        sizes = {values.shape for values in results.anatomy.values()} | {
            values.shape for values in results.maps.values()
        }
        if sizes and sizes != {shape}:
            raise WrongRadiographError(
                f"these results are {' or '.join(f'{r} x {c}' for r, c in sorted(sizes))} pixels, the "
                f"selected volume {shape[0]} x {shape[1]}: select the radiograph they were made for"
            )

    # -- heat maps --------------------------------------------------------------------------------------

    def colour_node(self):
        """The heat maps' colour table: inferno, its lowest entry transparent."""
        node = self.scene.GetFirstNodeByName(COLOUR_NODE)
        if node is None:
            table = colour_table()
            node = self._node("vtkMRMLColorTableNode", COLOUR_NODE)
            node.SetTypeToUser()
            node.SetNumberOfColors(len(table))
            for index, (r, g, b, a) in enumerate(table):
                node.SetColor(index, f"{index}", r, g, b, a)
            node.SetAttribute("Category", "CXR-XAI")
        return node

    def map_volume(self, name: str, values: np.ndarray, reference, class_name="vtkMRMLScalarVolumeNode"):
        """A map or mask on the radiograph's grid: the reference volume's geometry copied, so they align."""
        node = self._node(class_name, name)
        slicer.util.updateVolumeFromArray(node, volume_array(values))
        node.SetIJKToRASMatrix(_ijk_to_ras(reference))
        return node

    def heatmap_volume(self, name: str, values: np.ndarray, reference, threshold: float):
        """A heat map (values in [0, 1]) styled for the review: inferno over a fixed [0, 1] window, values
        below `threshold` hidden, and a colour legend."""
        node = self.map_volume(name, values, reference)
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        display.SetAndObserveColorNodeID(self.colour_node().GetID())
        display.SetAutoWindowLevel(False)
        display.SetWindowLevelMinMax(0.0, 1.0)
        lower, upper = display_range(threshold)
        display.SetApplyThreshold(True)
        display.SetLowerThreshold(lower)
        display.SetUpperThreshold(upper)
        legend = slicer.vtkSlicerColorLogic.AddDefaultColorLegendDisplayNode(node)
        if legend is not None:
            legend.SetTitleText("Relevance")
            legend.SetAttribute(OUR_NODE_ATTRIBUTE, "1")
        return node

    def show_heatmap(
        self,
        results: RadiographResults,
        values: np.ndarray,
        reference,
        threshold: float = 0.2,
        opacity: float = 0.5,
    ):
        """One map over the radiograph in the main views (never in a comparison's views)."""
        self.check_radiograph(results, reference)
        node = self.heatmap_volume(HEATMAP_NODE, values, reference, threshold)
        self.set_layers(MAIN_VIEWS, reference, node, opacity)
        return node

    def show_comparison(
        self,
        results: RadiographResults,
        layer_maps: Sequence[tuple[str, np.ndarray]],
        reference,
        threshold: float = 0.2,
        opacity: float = 0.5,
    ) -> list:
        """Layer maps side by side: layer i in the slice view named COMPARE_VIEW i (1-based), which the
        widget's comparison layout makes."""
        self.check_radiograph(results, reference)
        nodes = []
        for number, (layer, values) in enumerate(layer_maps, start=1):
            node = self.heatmap_volume(f"{HEATMAP_NODE} {layer_name(layer)}", values, reference, threshold)
            self.set_layers([COMPARE_VIEW.format(number=number)], reference, node, opacity)
            nodes.append(node)
        return nodes

    def set_layers(self, views: Iterable[str], background, foreground, opacity: float) -> None:
        """Background and foreground of the named slice views only (slicer.util.setSliceViewerLayers
        changes every view, the comparison's too)."""
        views = set(views)
        for composite in self._nodes("vtkMRMLSliceCompositeNode"):
            if composite.GetLayoutName() in views:
                composite.SetBackgroundVolumeID(background.GetID() if background is not None else None)
                composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
                composite.SetForegroundOpacity(opacity)

    def hide_heatmap(self) -> None:
        for composite in self._nodes("vtkMRMLSliceCompositeNode"):
            if composite.GetLayoutName() in MAIN_VIEWS:
                composite.SetForegroundVolumeID(None)

    # -- anatomy, the cardiothoracic ratio, the presentation state's outlines ----------------------------

    def show_anatomy(self, results: RadiographResults, reference, show: bool = True):
        """The model's lungs and heart as three segments of one segmentation, outlined on the radiograph;
        a structure the model did not find is an empty segment under its own name and colour."""
        node = self.scene.GetFirstNodeByName(ANATOMY_NODE)
        if not show or not results.anatomy:
            if node is not None:
                node.SetDisplayVisibility(False)
            return node
        self.check_radiograph(results, reference)
        if node is None:
            node = self._node("vtkMRMLSegmentationNode", ANATOMY_NODE)
            node.CreateDefaultDisplayNodes()
        segmentation = node.GetSegmentation()
        segmentation.RemoveAllSegments()
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
        matrix = _ijk_to_ras(reference)
        names = [name for name in ANATOMY_ORDER if name in results.anatomy]
        names += [name for name in results.anatomy if name not in names]
        for name in names:
            colour = ANATOMY_COLOURS.get(name, (0.8, 0.8, 0.2))
            segment_id = segmentation.AddEmptySegment(name, name, colour)
            mask = results.anatomy[name]
            if mask.any():
                slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                    _oriented_mask(mask, matrix), node, segment_id,
                    slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE,
                )  # fmt: skip
        display = node.GetDisplayNode()
        display.SetOpacity2DFill(0.0)
        display.SetOpacity2DOutline(1.0)
        node.SetDisplayVisibility(True)
        return node

    def show_ctr(self, results: RadiographResults, reference, show: bool = True) -> list:
        """The cardiothoracic ratio's two widths as lines on the radiograph: the heart's and the thorax's
        (outer lung edges) horizontal extents, each drawn across the row where it is widest, labelled
        with the ratio the results report."""
        from cxrxai.cardiothoracic import ctr_widths

        nodes = [self.scene.GetFirstNodeByName(name) for name in CTR_NODES.values()]
        lungs = results.lungs()
        widths = (
            None
            if lungs is None or "Heart" not in results.anatomy
            else ctr_widths(results.anatomy["Heart"], lungs)
        )
        if not show or widths is None:
            for node in nodes:
                if node is not None:
                    node.SetDisplayVisibility(False)
            return [node for node in nodes if node is not None]
        self.check_radiograph(results, reference)
        ratio = "not measured" if results.ctr is None else f"{results.ctr:.2f}"
        made = []
        matrix = _ijk_to_ras(reference)
        for (part, name), width in zip(CTR_NODES.items(), widths, strict=True):
            node = self._node("vtkMRMLMarkupsLineNode", name)
            node.RemoveAllControlPoints()
            for column in (width.left, width.right):
                node.AddControlPoint(vtk.vtkVector3d(*_ras(matrix, column, width.row)))
            node.SetNthControlPointLabel(0, f"{part} (CTR {ratio})" if part == "heart" else part)
            node.SetNthControlPointLabel(1, "")
            node.SetLocked(True)
            _style_markup(node, CTR_COLOUR)
            made.append(node)
        return made

    def show_outlines(self, results: RadiographResults, outlines: Sequence[Outline], reference) -> list:
        """The presentation state's outlines as closed curves on the radiograph, named by what they
        outline."""
        self.check_radiograph(results, reference)
        prefix = OUTLINE_NODE.format(label="")
        self.remove(node for node in self._ours() if node.GetName().startswith(prefix))
        made = []
        matrix = _ijk_to_ras(reference)
        for outline in outlines:
            name = OUTLINE_NODE.format(label=outline.label)
            node = self._node("vtkMRMLMarkupsClosedCurveNode", name, new=True)
            # DICOM pixel units put the top-left pixel's centre at (0.5, 0.5); IJK puts it at (0, 0)
            points = [_ras(matrix, column - 0.5, row - 0.5) for column, row in outline.points]
            if len(points) > 1 and np.allclose(points[0], points[-1]):
                points = points[:-1]  # a closed curve closes itself
            array = vtk.vtkPoints()
            for point in points:
                array.InsertNextPoint(*point)
            node.SetControlPointPositionsWorld(array)
            for index in range(node.GetNumberOfControlPoints()):
                node.SetNthControlPointLabel(index, "")
            node.SetLocked(True)
            _style_markup(node, OUTLINE_COLOURS.get(outline.layer, (1.0, 1.0, 1.0)), points_visible=False)
            made.append(node)
        return made

    # -- the review's nodes -----------------------------------------------------------------------------

    def clear(self) -> None:
        """Remove every node the review made (results of another radiograph, a closed review)."""
        self.remove(self._ours())

    def remove(self, nodes: Iterable) -> None:
        for node in list(nodes):
            self.scene.RemoveNode(node)

    def _ours(self) -> list:
        return [node for node in self._nodes("vtkMRMLNode") if node.GetAttribute(OUR_NODE_ATTRIBUTE)]

    def _nodes(self, class_name: str) -> list:
        collection = self.scene.GetNodesByClass(class_name)
        return [collection.GetItemAsObject(index) for index in range(collection.GetNumberOfItems())]

    def _node(self, class_name: str, name: str, new: bool = False):
        """Our node of that class and name, made when there is none (or `new`)."""
        node = None if new else self.scene.GetFirstNode(name, class_name)
        if node is None:
            node = self.scene.AddNewNodeByClass(class_name, name)
            node.SetAttribute(OUR_NODE_ATTRIBUTE, "1")
        return node


def _modality_values(dataset) -> np.ndarray:
    """Stored pixel values through the Modality LUT / Rescale, as Slicer's scalar-volume loader shows them."""
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom 2
        from pydicom.pixel_data_handlers.util import apply_modality_lut
    values = apply_modality_lut(dataset.pixel_array, dataset)
    if values.ndim != 2:
        raise ValueError(f"a radiograph has one grey-level frame; this file's pixel data is {values.shape}")
    return np.asarray(values, dtype=np.float32)


def _oriented_mask(mask: np.ndarray, ijk_to_ras_matrix):
    """A rows x columns mask as Slicer's oriented image (one slice), on the radiograph's grid."""
    rows, columns = mask.shape
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(columns, rows, 1)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    image.GetPointData().GetScalars().DeepCopy(
        numpy_support.numpy_to_vtk(np.ascontiguousarray(mask, dtype=np.uint8).ravel())
    )
    image.SetImageToWorldMatrix(ijk_to_ras_matrix)
    return image


def _ijk_to_ras(volume):
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return matrix


def _ras(matrix, column: float, row: float) -> tuple[float, float, float]:
    """RAS of a point given in the radiograph's continuous pixel index coordinates (IJK, slice 0), through
    the radiograph's IJK-to-RAS `matrix`."""
    x, y, z, _ = matrix.MultiplyPoint((column, row, 0.0, 1.0))
    return x, y, z


def _style_markup(node, colour: tuple[float, float, float], points_visible: bool = True) -> None:
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetSelectedColor(*colour)
    display.SetColor(*colour)
    display.SetPointLabelsVisibility(points_visible)
    if not points_visible:
        display.SetGlyphScale(0.0)
    display.SetPropertiesLabelVisibility(False)
