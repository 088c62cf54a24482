"""Segmentation objects of one radiograph, and a reader for any SEG of a projection radiograph.

Two SEG instances per source image, because one SEG has one Segmentation Type:
- anatomy: BINARY segments right lung, left lung, heart;
- heatmaps: FRACTIONAL (probability) segments, for each selected finding the fused Grad-CAM map and each
  layer's map from encoder to decoder, labelled "finding | method | layer".
Both JPEG 2000 lossless (highdicom allows no RLE for BINARY), at the source rows x columns.

Known trap: highdicom 0.28 writes a projection-radiograph SEG whose Pixel Measures hold Pixel Spacing but
no Slice Thickness, and its own `segread` then refuses it; a CR often has no Frame of Reference either.
Our objects stay valid for dciodvfy, and `read_seg` reads them (and any standard SEG of a radiograph)
with pydicom alone: segments from the Segment Sequence, frames by Referenced Segment Number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as codes_dict
from pydicom.sr.coding import Code
from pydicom.uid import JPEG2000Lossless

from cxrxai.dicom import codes
from cxrxai.dicom.common import SERIES, Device, finish_result, result_uid
from cxrxai.labels import ANATOMY

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_SEPARATOR = " | "
HEATMAP_CATEGORY = Code("XAIMAP", codes.PRIVATE_SCHEME, "Explanation heat map")
ANATOMY_CATEGORY = codes_dict.SCT.AnatomicalStructure


class SEGReadError(ValueError):
    """Not a Segmentation object, or frames that do not match its segments."""


@dataclass(frozen=True)
class HeatmapLayer:
    """One heatmap to encode: which finding, method and layer, and the map at source geometry in [0, 1]."""

    finding: str
    method: str
    layer: str
    values: np.ndarray

    @property
    def label(self) -> str:
        return LABEL_SEPARATOR.join((self.finding, self.method, self.layer))


@dataclass
class Segment:
    """A segment read back: number, label, property codes, parsed labels, and its plane (rows x columns)."""

    number: int
    label: str
    category: Code
    property_type: Code
    values: np.ndarray
    finding: str | None = None
    method: str | None = None
    layer: str | None = None
    tracking_uid: str | None = None


@dataclass
class SegContents:
    segmentation_type: str
    segments: list[Segment] = field(default_factory=list)
    referenced_sop_instance_uids: list[str] = field(default_factory=list)

    def by_label(self) -> dict[str, Segment]:
        return {s.label: s for s in self.segments}


def _algorithm(device: Device) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=device.name, family=codes_dict.DCM.ArtificialIntelligence, version=device.version
    )


def _identity(source: Dataset, device: Device, role: str) -> dict:
    """Series, instance, device and encoding arguments both SEGs share."""
    uid = str(source.SOPInstanceUID)
    return {
        "series_instance_uid": result_uid(uid, device.content_hash, role, "series"),
        "series_number": SERIES[role][0],
        "sop_instance_uid": result_uid(uid, device.content_hash, role, "instance"),
        "instance_number": 1,
        "manufacturer": device.manufacturer,
        "manufacturer_model_name": device.name,
        "software_versions": device.version,
        "device_serial_number": device.content_hash.removeprefix("sha256:")[:16],
        "transfer_syntax_uid": JPEG2000Lossless,
        "omit_empty_frames": False,
    }


def _finish(seg: hd.seg.Segmentation, source: Dataset, device: Device, role: str) -> hd.seg.Segmentation:
    """What highdicom leaves out for a radiograph, and what every result of ours carries."""
    # Type 2C in General Image without plane orientation (a projection radiograph): copy, or leave empty.
    seg.PatientOrientation = source.get("PatientOrientation", "")
    finish_result(seg, source, device, role, image=False)
    return seg


def build_anatomy_seg(source: Dataset, masks: np.ndarray, device: Device) -> hd.seg.Segmentation:
    """BINARY SEG of right lung, left lung and heart; `masks`: 3 x rows x columns bool, source geometry."""
    if masks.shape != (len(ANATOMY), source.Rows, source.Columns):
        raise ValueError(
            f"anatomy masks {masks.shape} do not match the source {source.Rows} x {source.Columns}"
        )
    algorithm = _algorithm(device)
    uid = str(source.SOPInstanceUID)
    descriptions = []
    for number, name in enumerate(ANATOMY, start=1):
        laterality = codes.LATERALITY.get(name)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=name,
                segmented_property_category=ANATOMY_CATEGORY,
                segmented_property_type=codes.ANATOMY_CODES[name].code,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_uid=result_uid(uid, device.content_hash, "seg-anatomy", f"segment:{name}"),
                tracking_id=name,
                anatomic_regions=[codes.CHEST.code],
                primary_anatomic_structures=(
                    [hd.sr.CodedConcept.from_code(codes.ANATOMY_CODES[name].code)]
                    if laterality is None
                    else None
                ),
            )
        )
        if laterality is not None:
            # laterality as a modifier of the segmented property type (PS3.3 C.8.20.2 Segmented Property Type
            # Modifier Code Sequence)
            modifier = hd.sr.CodedConcept.from_code(laterality)
            descriptions[-1].SegmentedPropertyTypeCodeSequence[
                0
            ].SegmentedPropertyTypeModifierCodeSequence = [modifier]
    pixel_array = np.moveaxis(masks.astype(bool), 0, -1)[None]  # 1 x rows x columns x segments
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        **_identity(source, device, "seg-anatomy"),
        content_label="ANATOMY",
        content_description="Lungs and heart (AI-generated)",
    )
    return _finish(seg, source, device, "seg-anatomy")


def build_heatmap_seg(
    source: Dataset, heatmaps: Sequence[HeatmapLayer], device: Device
) -> hd.seg.Segmentation:
    """FRACTIONAL (probability) SEG with one segment per heatmap, labelled finding | method | layer."""
    if not heatmaps:
        raise ValueError("no heatmaps selected: a SEG needs at least one segment")
    algorithm = _algorithm(device)
    uid = str(source.SOPInstanceUID)
    descriptions = []
    planes = []
    for number, heatmap in enumerate(heatmaps, start=1):
        if heatmap.values.shape != (source.Rows, source.Columns):
            raise ValueError(
                f"heatmap {heatmap.label} is {heatmap.values.shape}, "
                f"not the source's {source.Rows} x {source.Columns}"
            )
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=heatmap.label[:64],
            segmented_property_category=HEATMAP_CATEGORY,
            segmented_property_type=codes.FINDING_CODES[heatmap.finding].code,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=result_uid(uid, device.content_hash, "seg-heatmaps", f"segment:{heatmap.label}"),
            tracking_id=heatmap.label[:64],
        )
        description.SegmentDescription = (
            f"finding={heatmap.finding}; method={heatmap.method}; layer={heatmap.layer}"
        )
        descriptions.append(description)
        planes.append(np.clip(heatmap.values, 0.0, 1.0).astype(np.float32))
    pixel_array = np.stack(planes, axis=-1)[None]  # 1 x rows x columns x segments, values in [0, 1]
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        max_fractional_value=255,
        segment_descriptions=descriptions,
        **_identity(source, device, "seg-heatmaps"),
        content_label="HEATMAPS",
        content_description="Explanation heat maps (AI-generated)",
    )
    return _finish(seg, source, device, "seg-heatmaps")


# ------------------------------------------------------------------------------------------------- read
def read_seg(dataset: Dataset) -> SegContents:
    """Segments with their planes at the source geometry (bool for BINARY, [0, 1] float for FRACTIONAL).

    pydicom only; needs neither Frame of Reference nor Slice Thickness, so it reads projection-radiograph
    SEGs that highdicom's own reader refuses.
    """
    if str(dataset.get("SOPClassUID", "")) != SEGMENTATION_STORAGE:
        raise SEGReadError(f"not a Segmentation object (SOP Class {dataset.get('SOPClassUID', 'missing')})")
    kind = str(dataset.SegmentationType)
    frames = dataset.pixel_array
    if frames.ndim == 2:
        frames = frames[None]
    per_frame = dataset.PerFrameFunctionalGroupsSequence
    if len(per_frame) != len(frames):
        raise SEGReadError(f"{len(frames)} frames but {len(per_frame)} per-frame functional groups")
    by_segment: dict[int, np.ndarray] = {}
    for frame, groups in zip(frames, per_frame, strict=True):
        number = int(groups.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        if kind == "FRACTIONAL":
            plane = frame.astype(np.float32) / float(dataset.MaximumFractionalValue)
            by_segment[number] = np.maximum(by_segment.get(number, plane), plane)
        else:
            plane = frame.astype(bool)
            by_segment[number] = by_segment.get(number, plane) | plane
    empty = np.zeros((int(dataset.Rows), int(dataset.Columns)), np.float32 if kind == "FRACTIONAL" else bool)
    contents = SegContents(
        segmentation_type=kind, referenced_sop_instance_uids=_referenced_instances(dataset)
    )
    for item in dataset.SegmentSequence:
        number = int(item.SegmentNumber)
        label = str(item.get("SegmentLabel", ""))
        parts = label.split(LABEL_SEPARATOR)
        finding, method, layer = parts if len(parts) == 3 else (None, None, None)
        contents.segments.append(
            Segment(
                number=number,
                label=label,
                category=_code(item.SegmentedPropertyCategoryCodeSequence[0]),
                property_type=_code(item.SegmentedPropertyTypeCodeSequence[0]),
                values=by_segment.get(number, empty),
                finding=finding,
                method=method,
                layer=layer,
                tracking_uid=str(item.get("TrackingUID", "")) or None,
            )
        )
    return contents


def _code(item: Dataset) -> Code:
    return Code(str(item.CodeValue), str(item.CodingSchemeDesignator), str(item.CodeMeaning))


def _referenced_instances(dataset: Dataset) -> list[str]:
    return [
        str(instance.ReferencedSOPInstanceUID)
        for series in dataset.get("ReferencedSeriesSequence", [])
        for instance in series.get("ReferencedInstanceSequence", [])
    ]
