"""A Grayscale Softcopy Presentation State over the source radiograph: outlines any PACS viewer draws on
the original image, with no extra pixels (qXR ships GSPS for this reason).

Layer "ANATOMY": lung and heart contours. Layer "FINDINGS": for each selected finding, the outline of its
heat map's hottest region (normalised map >= 0.5, the largest contour) labelled "finding p=0.83".
The caller passes the outlines (`cxrxai.dicom.outlines`), which the SR's image regions share.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from cxrxai.dicom.common import SERIES, Device, finish_result, result_uid
from cxrxai.explanation import FindingPrediction
from cxrxai.io.grey import LookupTable, Window, lut_entries, voi_in_use
from cxrxai.io.spacing import radiograph_spacing


def _fit_lut(item: Dataset, table: LookupTable) -> None:
    """highdicom declares every LUT 16 bits per entry; keep the source's bits instead (a 12-bit table
    declared as 16 would display sixteen times too dark), one entry per 16-bit word."""
    item.LUTDescriptor = [table.entries.size % 2**16, table.first_mapped, table.bits]
    item.add_new("LUTData", "OW", table.entries.astype("<u2").tobytes())


def _full_range(table: LookupTable) -> LookupTable:
    """A VOI LUT's bits may only be 8 or 16 (PS3.3 C.11.2.1.1), and readers disagree whether 8-bit entries
    are packed two to a word: every table is written with 16 bits, stretched, which a viewer's
    presentation LUT maps to the same greys. (A Modality LUT is copied as it is: its output values are
    what a window refers to.)"""
    if table.bits == 16:
        return table
    scale = (2**16 - 1) / (2**table.bits - 1)
    entries = np.round(table.entries.astype(np.float64) * scale).clip(0, 2**16 - 1).astype(np.uint16)
    return LookupTable(table.first_mapped, entries, 16, table.explanation)


def _rescale_type(value: object) -> str:
    text = str(value or "US")
    return text if text in hd.RescaleTypeValues.__members__ else "US"


def modality_transformation(source: Dataset) -> hd.ModalityLUTTransformation | None:
    """The source's Modality LUT as the reader applied it (a usable LUT, else Rescale Slope and
    Intercept, else identity when the source has half a rescale); None when the source has none."""
    sequence = source.get("ModalityLUTSequence")
    table = lut_entries(sequence[0], source) if sequence else None
    if table is not None:
        assert sequence is not None
        lut = hd.ModalityLUT(
            lut_type=_rescale_type(sequence[0].get("ModalityLUTType")),
            first_mapped_value=table.first_mapped,
            lut_data=table.entries,
            lut_explanation=table.explanation,
        )
        _fit_lut(lut, table)
        return hd.ModalityLUTTransformation(modality_lut=lut)
    slope, intercept = source.get("RescaleSlope"), source.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        return hd.ModalityLUTTransformation(
            rescale_intercept=float(intercept),
            rescale_slope=float(slope),
            rescale_type=_rescale_type(source.get("RescaleType")),
        )
    if slope is not None or intercept is not None or sequence is not None:
        return hd.ModalityLUTTransformation(rescale_intercept=0.0, rescale_slope=1.0, rescale_type="US")
    return None


VOI_KEYWORDS = (
    "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction", "VOILUTSequence",
)  # fmt: skip


def _without_voi(source: Dataset) -> Dataset:
    """The source as the GSPS references it: without its VOI attributes, which highdicom would otherwise
    copy (and refuse when unusable) where `voi_transformations` chose none."""
    if not any(keyword in source for keyword in VOI_KEYWORDS):
        return source
    reference = copy.deepcopy(source)  # Dataset.copy() shares the elements: deleting would touch the source
    for keyword in VOI_KEYWORDS:
        if keyword in reference:
            delattr(reference, keyword)
    return reference


def voi_transformations(source: Dataset) -> list[hd.pr.SoftcopyVOILUTTransformation] | None:
    """The one VOI transformation the reader applied (`cxrxai.io.grey.voi_in_use`): the first VOI LUT
    with its LUT Data read from US values or OW bytes, or the first window; None for the full range."""
    voi = voi_in_use(source)
    if isinstance(voi, LookupTable):
        table = _full_range(voi)
        lut = hd.VOILUT(table.first_mapped, table.entries, table.explanation)
        _fit_lut(lut, table)
        return [hd.pr.SoftcopyVOILUTTransformation(voi_luts=[lut])]
    if isinstance(voi, Window):
        transformation = hd.pr.SoftcopyVOILUTTransformation(
            window_center=voi.center, window_width=voi.width, voi_lut_function=voi.function
        )
        if voi.explanation:  # highdicom 0.28 splits a single explanation into characters
            transformation.add_new("WindowCenterWidthExplanation", "LO", voi.explanation)
        return [transformation]
    return None


def build_gsps(
    source: Dataset,
    anatomy: Mapping[str, Sequence[np.ndarray]],
    findings: Sequence[tuple[FindingPrediction, np.ndarray]],
    device: Device,
) -> hd.pr.GrayscaleSoftcopyPresentationState:
    """GSPS with anatomy contours (`anatomy`: each structure's outlines, longest first, as
    `cxrxai.dicom.outlines.outlines` gives them) and labelled hot-region outlines (`findings`: each
    finding with the outline of its map's hottest region)."""
    uid = str(source.SOPInstanceUID)
    anatomy_layer = hd.pr.GraphicLayer(layer_name="ANATOMY", order=1, description="Lungs and heart (AI)")
    findings_layer = hd.pr.GraphicLayer(
        layer_name="FINDINGS", order=2, description="Hottest heat-map regions (AI)"
    )
    anatomy_objects: list[hd.pr.GraphicObject] = []
    for name, lines in anatomy.items():
        for outline in lines[:2]:  # a lung is one region; keep a second for a split mask
            role = f"anatomy:{name}:{len(anatomy_objects)}"
            anatomy_objects.append(
                hd.pr.GraphicObject(
                    graphic_type="POLYLINE",
                    graphic_data=outline,
                    units="PIXEL",
                    tracking_id=name,
                    tracking_uid=result_uid(uid, device.content_hash, "gsps", role),
                )
            )
    annotations = []
    if anatomy_objects:
        annotations.append(hd.pr.GraphicAnnotation([source], anatomy_layer, graphic_objects=anatomy_objects))
    finding_objects: list[hd.pr.GraphicObject] = []
    texts: list[hd.pr.TextObject] = []
    for finding, outline in findings:
        label = f"{finding.name} p={finding.probability:.2f}"
        finding_objects.append(
            hd.pr.GraphicObject(
                graphic_type="POLYLINE", graphic_data=outline, units="PIXEL", tracking_id=label,
                tracking_uid=result_uid(uid, device.content_hash, "gsps", f"finding:{finding.name}"),
            )
        )  # fmt: skip
        left, top = float(outline[:, 0].min()), float(outline[:, 1].min())
        texts.append(
            hd.pr.TextObject(
                text_value=label,
                units="PIXEL",
                anchor_point=(left, max(top - 2.0, 0.0)),
                anchor_point_visible=False,
            )
        )
    if finding_objects:
        annotations.append(
            hd.pr.GraphicAnnotation(
                [source], findings_layer, graphic_objects=finding_objects, text_objects=texts
            )
        )
    number = SERIES["gsps"][0]
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[_without_voi(source)],
        series_instance_uid=result_uid(uid, device.content_hash, "gsps", "series"),
        series_number=number,
        sop_instance_uid=result_uid(uid, device.content_hash, "gsps", "instance"),
        instance_number=1,
        manufacturer=device.manufacturer,
        manufacturer_model_name=device.name,
        software_versions=device.version,
        device_serial_number=device.content_hash.removeprefix("sha256:")[:16],
        content_label="CXRXAI",
        content_description="AI outlines - not for diagnostic use",
        graphic_annotations=annotations,
        graphic_layers=[anatomy_layer, findings_layer],
        modality_lut_transformation=modality_transformation(source),
        voi_lut_transformations=voi_transformations(source),
        # a presentation state replaces the photometric inversion: MONOCHROME1 needs INVERSE to look right
        presentation_lut_transformation=hd.PresentationLUTTransformation(
            presentation_lut_shape="INVERSE"
            if source.get("PhotometricInterpretation") == "MONOCHROME1"
            else "IDENTITY"
        ),
    )
    _measure_like_the_source(gsps, source)
    finish_result(gsps, source, device, "gsps")
    return gsps


def _measure_like_the_source(gsps: Dataset, source: Dataset) -> None:
    """Presentation Pixel Spacing (the displayed area's spacing, which viewers measure with) from the
    source's spacing by the rules for projection radiographs (`cxrxai.io.spacing`); it replaces the pixel
    aspect ratio, which may only be given without it. No spacing in the source: the aspect ratio stays."""
    spacing = radiograph_spacing(source)
    if spacing is None:
        return
    for area in gsps.DisplayedAreaSelectionSequence:
        area.PresentationPixelSpacing = spacing.decimal_strings()
        if "PresentationPixelAspectRatio" in area:
            del area.PresentationPixelAspectRatio
