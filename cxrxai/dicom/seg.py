"""Segmentation objects of one radiograph, and a reader for any SEG of a projection radiograph.

Per source image, at the source rows x columns:
- anatomy: BINARY segments right lung, left lung, heart;
- heat maps: BINARY segments, for each selected finding the hot region of its displayed Grad-CAM map at
  `HEAT_LEVELS` as disjoint bands ("finding | method | layer | 0.50-0.70"), coloured yellow to red: the
  form every SEG viewer draws (OHIF draws no FRACTIONAL SEG);
- layer maps (on request): FRACTIONAL (probability) segments, for each selected finding the fused map and
  each layer's map from encoder to decoder, labelled "finding | method | layer", for readers that show
  the continuous maps layer by layer (our Slicer module).
Transfer syntax by the caller: Explicit VR Little Endian by default, which every archive can serve
(Orthanc without its GDCM plugin cannot transcode JPEG 2000 for a viewer), or JPEG 2000 lossless.
OHIF places a SEG frame on its image by the frame's Derivation Image reference and refuses a frame
without an Image Orientation (Patient); `_orient_like_the_source` adds the one a radiograph is shown in.

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
from pydicom.uid import ExplicitVRLittleEndian

from cxrxai.dicom import codes
from cxrxai.dicom.common import SERIES, Device, finish_result, result_uid
from cxrxai.io.spacing import radiograph_spacing
from cxrxai.labels import ANATOMY

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_SEPARATOR = " | "
HEATMAP_CATEGORY = hd.sr.CodedConcept("XAIMAP", codes.PRIVATE_SCHEME, "Explanation heat map")
ANATOMY_CATEGORY = hd.sr.CodedConcept.from_code(codes_dict.SCT.AnatomicalStructure)
# The hot-region levels of a normalised heat map the BINARY heat-map SEG carries, and their colours
HEAT_LEVELS = (0.5, 0.7, 0.9)
HEAT_COLOURS = ((255, 230, 0), (255, 140, 0), (230, 20, 20))
# Our private block: (0029,0010) "CXRXAI"; (0029,1001) LO in a Pixel Measures item without a spacing
PRIVATE_GROUP = 0x0029
PRIVATE_CREATOR = "CXRXAI"
ANATOMY_COLOURS = {"Right Lung": (64, 160, 255), "Left Lung": (64, 220, 160), "Heart": (230, 80, 200)}


class SEGReadError(ValueError):
    """Not a Segmentation object, or frames that do not match its segments."""


@dataclass(frozen=True)
class HeatmapLayer:
    """One heatmap to encode: which finding, method and layer, and the map in [0, 1] at the source
    geometry (the heat-map SEG also takes one on a coarser grid covering the source)."""

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
    band: tuple[float, float] | None = None  # a heat-map SEG's level band of the normalised map


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


def _segmentation(
    source: Dataset,
    planes: np.ndarray,
    descriptions: list[hd.seg.SegmentDescription],
    device: Device,
    role: str,
    transfer_syntax: str,
    content_label: str,
    content_description: str,
    segmentation_type: hd.seg.SegmentationTypeValues = hd.seg.SegmentationTypeValues.BINARY,
    **fractional,
) -> hd.seg.Segmentation:
    """One SEG of ours: `planes` (rows x columns x segments, one plane per segment at the source
    geometry), in the role's series, with what highdicom leaves out for a radiograph and what every
    result of ours carries."""
    uid = str(source.SOPInstanceUID)
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=planes[None],  # 1 x rows x columns x segments
        segmentation_type=segmentation_type,
        segment_descriptions=descriptions,
        series_instance_uid=result_uid(uid, device.content_hash, role, "series"),
        series_number=SERIES[role][0],
        sop_instance_uid=result_uid(uid, device.content_hash, role, "instance"),
        instance_number=1,
        manufacturer=device.manufacturer,
        manufacturer_model_name=device.name,
        software_versions=device.version,
        device_serial_number=device.content_hash.removeprefix("sha256:")[:16],
        transfer_syntax_uid=transfer_syntax,
        omit_empty_frames=False,
        content_label=content_label,
        content_description=content_description,
        **fractional,
    )
    # Type 2C in General Image without plane orientation (a projection radiograph): copy, or leave empty.
    seg.PatientOrientation = source.get("PatientOrientation", "")
    _orient_like_the_source(seg)
    _measure_like_the_source(seg, source)
    finish_result(seg, source, device, role, image=False)
    return seg


def _orient_like_the_source(seg: hd.seg.Segmentation) -> None:
    """Plane Orientation (Patient) in the shared functional groups: rows along +x, columns along +y, the
    orientation a viewer gives a radiograph that has none. OHIF refuses a SEG frame without one; dciodvfy
    reports no error for it in a SEG without a Frame of Reference."""
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence = [orientation]


def _measure_like_the_source(seg: hd.seg.Segmentation, source: Dataset) -> None:
    """A Pixel Measures item in the shared functional groups with the source's spacing by the rules for
    projection radiographs (`cxrxai.io.spacing`: Imager Pixel Spacing where Pixel Spacing is absent, the
    magnification factor applied), so a ruler on the SEG measures what one on the radiograph does.
    Without a spacing the item is still there (OHIF's SEG viewport reads it and fails without one, and an
    archive drops an empty item); Pixel Spacing and Slice Thickness may only be present with a value, and
    we never invent a spacing, so the item says in a private element that there is none."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    spacing = radiograph_spacing(source)
    if spacing is not None:
        measures = shared.PixelMeasuresSequence[0] if "PixelMeasuresSequence" in shared else Dataset()
        measures.PixelSpacing = spacing.decimal_strings()
        shared.PixelMeasuresSequence = [measures]
        return
    if "PixelMeasuresSequence" in shared:
        return
    measures = Dataset()
    measures.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True).add_new(
        0x01, "LO", "no pixel spacing in the source image"
    )
    shared.PixelMeasuresSequence = [measures]


def build_anatomy_seg(
    source: Dataset, masks: np.ndarray, device: Device, transfer_syntax: str = ExplicitVRLittleEndian
) -> hd.seg.Segmentation:
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
                # a lung's own item: its laterality is added to it below, and the shared one is the SR's too
                segmented_property_type=(
                    codes.ANATOMY_CODES[name].concept
                    if laterality is None
                    else hd.sr.CodedConcept.from_code(codes.ANATOMY_CODES[name].code)
                ),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_uid=result_uid(uid, device.content_hash, "seg-anatomy", f"segment:{name}"),
                tracking_id=name,
                anatomic_regions=[codes.CHEST.concept],
                primary_anatomic_structures=(
                    [codes.ANATOMY_CODES[name].concept]
                    if laterality is None
                    else None
                ),
            )
        )
        descriptions[-1].RecommendedDisplayCIELabValue = _cielab(ANATOMY_COLOURS[name])
        if laterality is not None:
            # laterality as a modifier of the segmented property type (PS3.3 C.8.20.2 Segmented Property Type
            # Modifier Code Sequence)
            modifier = hd.sr.CodedConcept.from_code(laterality)
            descriptions[-1].SegmentedPropertyTypeCodeSequence[
                0
            ].SegmentedPropertyTypeModifierCodeSequence = [modifier]
    return _segmentation(
        source, np.moveaxis(masks.astype(bool), 0, -1), descriptions, device, "seg-anatomy", transfer_syntax,
        "ANATOMY", "Lungs and heart (AI-generated)",
    )  # fmt: skip


def _cielab(rgb: tuple[int, int, int]) -> list[int]:
    """Recommended Display CIELab Value (PS3.3 C.10.7.1.1: scaled to 0-65535) of an sRGB colour."""
    return list(hd.color.CIELabColor.from_rgb(*rgb).value)


def band_index(values: np.ndarray, levels: Sequence[float] = HEAT_LEVELS) -> np.ndarray:
    """uint8: for each pixel of a map normalised to [0, 1] the number of its band [levels[i],
    levels[i + 1]) (1 for the first, the last one closed), 0 below all: the bands are disjoint, so a
    viewer's stacked segments show one colour per level."""
    index = np.zeros(values.shape, dtype=np.uint8)
    for level in levels:
        index += values >= level
    return index


def nearest_at_size(plane: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """`plane`, on a grid covering the same extent as a rows x columns image, sampled at each image pixel's
    centre by its nearest grid pixel (both grids span the image, as `cxrxai.geometry` resamples them)."""
    if plane.shape == (rows, columns):
        return plane
    row_index = ((np.arange(rows) + 0.5) * (plane.shape[0] / rows)).astype(np.intp)
    column_index = ((np.arange(columns) + 0.5) * (plane.shape[1] / columns)).astype(np.intp)
    return np.take(np.take(plane, row_index, axis=0), column_index, axis=1)


def band_label(heatmap: HeatmapLayer, index: int, levels: Sequence[float] = HEAT_LEVELS) -> str:
    """'finding | method | layer | 0.50-0.70' (the last band: '0.90-1.00')."""
    high = levels[index + 1] if index + 1 < len(levels) else 1.0
    return LABEL_SEPARATOR.join((heatmap.label, f"{levels[index]:.2f}-{high:.2f}"))


def build_heatmap_seg(
    source: Dataset,
    heatmaps: Sequence[HeatmapLayer],
    device: Device,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> hd.seg.Segmentation:
    """BINARY SEG of each map's hot region at `HEAT_LEVELS`, one segment per band, yellow to red.

    A map may come at the source geometry or on a coarser grid covering the source (`result_objects`
    passes one of at most `OUTLINE_GRID` pixels a side): its bands are found on that grid and each source
    pixel takes its nearest grid pixel's band, so at 3000 x 3000 the bands' edges lie within 1.5 source
    pixels of the exact ones while no map is resampled to 9 million float pixels (the SEG itself must have
    the source's rows and columns: a SEG of an image without a Frame of Reference has no other way to be
    placed on it)."""
    if not heatmaps:
        raise ValueError("no heatmaps selected: a SEG needs at least one segment")
    rows, columns = int(source.Rows), int(source.Columns)
    algorithm = _algorithm(device)
    descriptions: list[hd.seg.SegmentDescription] = []
    # one contiguous plane per segment, filled in place: at 3000 x 3000 the 21 planes of seven maps take
    # 190 MB; highdicom reads a segment's plane at a time, which is contiguous in this layout
    planes = np.empty((len(heatmaps) * len(HEAT_LEVELS), rows, columns), dtype=bool)
    for heatmap in heatmaps:
        _check_grid(source, heatmap)
        index = nearest_at_size(band_index(heatmap.values), rows, columns)
        for band in range(len(HEAT_LEVELS)):
            label = band_label(heatmap, band)
            description = _heatmap_segment(
                len(descriptions) + 1, label, heatmap, algorithm, source, device, "seg-heatmaps"
            )
            description.SegmentDescription += (
                f"; normalised map in [{label.rsplit(LABEL_SEPARATOR, 1)[1].replace('-', ', ')}]"
            )
            description.RecommendedDisplayCIELabValue = _cielab(HEAT_COLOURS[band])
            np.equal(index, band + 1, out=planes[len(descriptions)])
            descriptions.append(description)
    return _segmentation(
        source, np.moveaxis(planes, 0, -1), descriptions, device, "seg-heatmaps", transfer_syntax,
        "HEATMAPS", "Explanation heat maps, hot regions by level (AI-generated)",
    )  # fmt: skip


def build_layer_maps_seg(
    source: Dataset,
    heatmaps: Sequence[HeatmapLayer],
    device: Device,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> hd.seg.Segmentation:
    """FRACTIONAL (probability) SEG with one segment per map, labelled finding | method | layer."""
    if not heatmaps:
        raise ValueError("no heatmaps selected: a SEG needs at least one segment")
    algorithm = _algorithm(device)
    descriptions = []
    planes = np.empty((len(heatmaps), int(source.Rows), int(source.Columns)), dtype=np.float32)
    for number, heatmap in enumerate(heatmaps, start=1):
        _check_plane(source, heatmap)
        descriptions.append(
            _heatmap_segment(number, heatmap.label, heatmap, algorithm, source, device, "seg-layers")
        )
        np.clip(heatmap.values, 0.0, 1.0, out=planes[number - 1])  # values in [0, 1]
    return _segmentation(
        source, np.moveaxis(planes, 0, -1), descriptions, device, "seg-layers", transfer_syntax,
        "LAYERMAPS", "Explanation heat maps per layer (AI-generated)",
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        max_fractional_value=255,
    )  # fmt: skip


def _heatmap_segment(
    number: int,
    label: str,
    heatmap: HeatmapLayer,
    algorithm: hd.AlgorithmIdentificationSequence,
    source: Dataset,
    device: Device,
    role: str,
) -> hd.seg.SegmentDescription:
    """A heat-map segment: category XAIMAP, type = the finding, label and tracking ID `label`."""
    uid = str(source.SOPInstanceUID)
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label[:64],
        segmented_property_category=HEATMAP_CATEGORY,
        segmented_property_type=codes.FINDING_CODES[heatmap.finding].concept,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_uid=result_uid(uid, device.content_hash, role, f"segment:{label}"),
        tracking_id=label[:64],
    )
    description.SegmentDescription = (
        f"finding={heatmap.finding}; method={heatmap.method}; layer={heatmap.layer}"
    )
    return description


def _check_grid(source: Dataset, heatmap: HeatmapLayer) -> None:
    """A map on a grid no finer than the source, with the source's aspect to within a grid pixel."""
    rows, columns = heatmap.values.shape if heatmap.values.ndim == 2 else (0, 0)
    aspect = int(source.Columns) / int(source.Rows)
    fits = 0 < rows <= source.Rows and 0 < columns <= source.Columns
    if not (fits and abs(columns - rows * aspect) <= 1 + aspect):
        raise ValueError(
            f"heatmap {heatmap.label} is {heatmap.values.shape}: not a grid covering the source's "
            f"{source.Rows} x {source.Columns}"
        )


def _check_plane(source: Dataset, heatmap: HeatmapLayer) -> None:
    if heatmap.values.shape != (source.Rows, source.Columns):
        raise ValueError(
            f"heatmap {heatmap.label} is {heatmap.values.shape}, "
            f"not the source's {source.Rows} x {source.Columns}"
        )


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
        finding, method, layer, band = _parse_label(label)
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
                band=band,
            )
        )
    return contents


def _parse_label(label: str) -> tuple[str | None, str | None, str | None, tuple[float, float] | None]:
    """finding, method, layer and band of 'finding | method | layer[ | low-high]'; Nones otherwise."""
    parts = label.split(LABEL_SEPARATOR)
    if len(parts) == 3:
        return parts[0], parts[1], parts[2], None
    if len(parts) == 4:
        low, _, high = parts[3].partition("-")
        try:
            return parts[0], parts[1], parts[2], (float(low), float(high))
        except ValueError:
            pass
    return None, None, None, None


def _code(item: Dataset) -> Code:
    return Code(str(item.CodeValue), str(item.CodingSchemeDesignator), str(item.CodeMeaning))


def _referenced_instances(dataset: Dataset) -> list[str]:
    return [
        str(instance.ReferencedSOPInstanceUID)
        for series in dataset.get("ReferencedSeriesSequence", [])
        for instance in series.get("ReferencedInstanceSequence", [])
    ]
