"""The findings as a DICOM Comprehensive 3D SR with a TID 1500 Measurement Report, and back.

Per finding one measurement group (TID 1501): tracking identifier, finding type, algorithm identification,
a qualitative evaluation (finding present / absent by the bundle's threshold), the probability and the
threshold as numbers. The cardiothoracic ratio is its own group. Built with highdicom; read back with
pydicom alone, so any TID 1500 SR with our codes reads, and Slicer needs nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as codes_dict
from pydicom.sr.coding import Code

from cxrxai.dicom import codes
from cxrxai.dicom.common import DISCLAIMER, SERIES, Device, finish_result, result_uid
from cxrxai.labels import FINDINGS
from cxrxai.results import FindingPrediction

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
# the SR classes a TID 1500 report can come in: Comprehensive 3D, Comprehensive, Enhanced
TID1500_SR_CLASSES = (COMPREHENSIVE_3D_SR, "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.22")
DEVICE_SERIAL_NUMBER = "121016"  # DCM: Device Observer Serial Number, where our SRs carry the bundle hash


class SRReadError(ValueError):
    """The SR is not a CXR-XAI TID 1500 findings report (or is damaged); the message says what is missing."""


@dataclass
class ReportedFindings:
    """What an SR says: per finding probability, threshold and decision; CTR; the device; the source."""

    findings: list[FindingPrediction]
    present: dict[str, bool]
    ctr: float | None
    algorithm_name: str
    algorithm_version: str
    source_sop_instance_uid: str


def _measurement(name: Code, value: float) -> hd.sr.Measurement:
    """A unitless measurement whose exact double rides in Floating Point Value (0040,A161) next to the
    16-character decimal string, so the probability read back is bit-identical."""
    measurement = hd.sr.Measurement(name=name, value=float(value), unit=codes.NO_UNITS.code)
    measurement[0].MeasuredValueSequence[0].FloatingPointValue = float(value)
    return measurement


def build_sr(
    source: Dataset,
    findings: Sequence[FindingPrediction],
    ctr: float | None,
    device: Device,
    segmentations: Sequence[Dataset] = (),
    pictures: Sequence[Dataset] = (),
) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 Measurement Report on the source radiograph, joining its study, in its own series.

    Every segment of `segmentations` (our anatomy and heatmap SEGs) gets a planar-ROI group (TID 1410)
    that references it (the SEGs join the evidence, as the content references them); the Secondary
    Capture `pictures` are listed as Pertinent Other Evidence, so every result can be found from the SR.
    """
    if [f.name for f in findings] != list(FINDINGS):
        raise ValueError("an SR must report all 14 findings in CheXpert order")
    algorithm = hd.sr.AlgorithmIdentification(
        name=device.name,
        version=device.version,
        parameters=[f"bundle content hash {device.content_hash}", DISCLAIMER],
    )
    observer = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept.from_code(codes_dict.DCM.Device),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device.uid,
            name=device.name,
            manufacturer_name=device.manufacturer,
            model_name=device.version,
            serial_number=device.content_hash,
        ),
    )
    source_uid = str(source.SOPInstanceUID)
    groups: list[hd.sr.MeasurementsAndQualitativeEvaluations] = []
    for finding in findings:
        concept = codes.FINDING_CODES[finding.name].code
        tracking = hd.sr.TrackingIdentifier(
            uid=result_uid(source_uid, device.content_hash, "sr", f"finding:{finding.name}"),
            identifier=finding.name,
        )
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                finding_type=concept,
                algorithm_id=algorithm,
                qualitative_evaluations=[
                    hd.sr.QualitativeEvaluation(
                        name=concept, value=(codes.PRESENT if finding.present else codes.ABSENT).code
                    )
                ],
                measurements=[
                    _measurement(codes.PROBABILITY.code, finding.probability),
                    _measurement(codes.DECISION_THRESHOLD.code, finding.threshold),
                ],
            )
        )
    if ctr is not None:
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=result_uid(source_uid, device.content_hash, "sr", "ctr"),
                    identifier="Cardiothoracic ratio",
                ),
                algorithm_id=algorithm,
                measurements=[_measurement(codes.CARDIOTHORACIC_RATIO.code, ctr)],
            )
        )
    for segmentation in segmentations:
        groups.extend(_segment_groups(source, segmentation, algorithm))  # type: ignore[arg-type]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=[codes.PLAIN_RADIOGRAPHY.code],
        imaging_measurements=groups,
    )
    root = report[0]
    position = next(
        i
        for i, item in enumerate(root.ContentSequence)
        if item.ConceptNameCodeSequence[0].CodeValue == "126010"
    )
    root.ContentSequence.insert(position, _image_library(source))
    _reference_segments_not_frames(root)
    number = SERIES["sr"][0]
    sr = hd.sr.Comprehensive3DSR(
        evidence=[source, *segmentations],
        content=report,
        series_instance_uid=result_uid(source_uid, device.content_hash, "sr", "series"),
        series_number=number,
        sop_instance_uid=result_uid(source_uid, device.content_hash, "sr", "instance"),
        instance_number=1,
        manufacturer=device.manufacturer,
        is_complete=True,
    )
    finish_result(sr, source, device, "sr", image=False)
    if pictures:
        sr.PertinentOtherEvidenceSequence = _evidence(pictures)
    return sr


def _segment_groups(
    source: Dataset, segmentation: Dataset, algorithm: hd.sr.AlgorithmIdentification
) -> list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]:
    """One planar-ROI group per segment, referencing the segment's frames and the source image."""
    frames: dict[int, list[int]] = {}
    for index, groups in enumerate(segmentation.PerFrameFunctionalGroupsSequence, start=1):
        frames.setdefault(int(groups.SegmentIdentificationSequence[0].ReferencedSegmentNumber), []).append(
            index
        )
    result = []
    for segment in segmentation.SegmentSequence:
        number = int(segment.SegmentNumber)
        property_type = segment.SegmentedPropertyTypeCodeSequence[0]
        result.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=segment.TrackingUID, identifier=segment.SegmentLabel
                ),
                referenced_segment=hd.sr.ReferencedSegmentationFrame(
                    sop_class_uid=segmentation.SOPClassUID,
                    sop_instance_uid=segmentation.SOPInstanceUID,
                    frame_number=frames[number],
                    segment_number=number,
                    source_image=hd.sr.SourceImageForSegmentation(source.SOPClassUID, source.SOPInstanceUID),
                ),
                finding_type=Code(
                    str(property_type.CodeValue),
                    str(property_type.CodingSchemeDesignator),
                    str(property_type.CodeMeaning),
                ),
                algorithm_id=algorithm,
            )
        )
    return result


def _reference_segments_not_frames(root: Dataset) -> None:
    """A SEG reference names segments or frames, never both (PS3.3 C.18.3.1: Referenced Segment Number is
    'required if ... the reference is to segments and not frames'). highdicom writes both, dciodvfy
    rejects that; we keep the segment numbers, which say what the region is."""
    for item in _flatten(root.ContentSequence):
        if item.ValueType != "IMAGE":
            continue
        for reference in item.ReferencedSOPSequence:
            is_segment = reference.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
            if is_segment and "ReferencedSegmentNumber" in reference and "ReferencedFrameNumber" in reference:
                del reference.ReferencedFrameNumber


def _evidence(objects: Sequence[Dataset]) -> list[Dataset]:
    """Hierarchical SOP Instance Reference (study > series > instance) of our other result objects."""
    studies: dict[str, dict[str, list[Dataset]]] = {}
    for obj in objects:
        studies.setdefault(str(obj.StudyInstanceUID), {}).setdefault(str(obj.SeriesInstanceUID), []).append(
            obj
        )
    sequence = []
    for study_uid, series in studies.items():
        study = Dataset()
        study.StudyInstanceUID = study_uid
        study.ReferencedSeriesSequence = []
        for series_uid, members in series.items():
            item = Dataset()
            item.SeriesInstanceUID = series_uid
            item.ReferencedSOPSequence = []
            for member in members:
                reference = Dataset()
                reference.ReferencedSOPClassUID = member.SOPClassUID
                reference.ReferencedSOPInstanceUID = member.SOPInstanceUID
                item.ReferencedSOPSequence.append(reference)
            study.ReferencedSeriesSequence.append(item)
        sequence.append(study)
    return sequence


# View Position (0018,5101) as TID 1602 Image View (CID 4010 DX View), so indexes and viewers that only
# have the SR know which projection was explained
VIEW_CODES = {
    "PA": codes_dict.cid4010.PosteroAnterior,
    "AP": codes_dict.cid4010.AnteroPosterior,
    "LL": codes_dict.cid4010.LeftLateral,
    "RL": codes_dict.cid4010.RightLateral,
    "LATERAL": codes_dict.cid4010.LateralProjection,
}
IMAGE_VIEW = codes_dict.DCM.ImageView


class _RadiographDescriptors(hd.sr.ImageLibraryEntryDescriptors):
    """TID 1603 descriptors with only what the radiograph has: highdicom's version requires Patient
    Orientation and Imager Pixel Spacing, which many CRs lack; we never invent a spacing."""

    def _generate_projection_radiography_descriptors(self, dataset: Dataset) -> list[hd.sr.ContentItem]:
        items: list[hd.sr.ContentItem] = []
        view = VIEW_CODES.get(str(dataset.get("ViewPosition", "")).strip().upper())
        if view is not None:
            items.append(
                hd.sr.CodeContentItem(
                    name=IMAGE_VIEW,
                    value=view,
                    relationship_type=hd.sr.RelationshipTypeValues.HAS_ACQ_CONTEXT,
                )
            )
        orientation = dataset.get("PatientOrientation")
        if orientation and len(orientation) == 2:
            for name, value in (
                (codes_dict.DCM.PatientOrientationRow, orientation[0]),
                (codes_dict.DCM.PatientOrientationColumn, orientation[1]),
            ):
                items.append(
                    hd.sr.TextContentItem(
                        name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.HAS_ACQ_CONTEXT
                    )
                )
        spacing = dataset.get("ImagerPixelSpacing") or dataset.get("PixelSpacing")
        if spacing and len(spacing) == 2 and all(float(v) > 0 for v in spacing):
            for name, value in (
                (codes_dict.DCM.HorizontalPixelSpacing, spacing[1]),
                (codes_dict.DCM.VerticalPixelSpacing, spacing[0]),
            ):
                items.append(
                    hd.sr.NumContentItem(
                        name=name, value=float(value), unit=codes_dict.UCUM.Millimeter,
                        relationship_type=hd.sr.RelationshipTypeValues.HAS_ACQ_CONTEXT,
                    )
                )  # fmt: skip
        return items


def _image_library(source: Dataset) -> hd.sr.ContainerContentItem:
    """TID 1600 Image Library with the one source radiograph (highdicom's structure, our descriptors)."""
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    image = hd.sr.ImageContentItem(
        name=Code("260753009", "SCT", "Source"),
        referenced_sop_class_uid=source.SOPClassUID,
        referenced_sop_instance_uid=source.SOPInstanceUID,
        relationship_type=contains,
    )
    image.ContentSequence = hd.sr.ContentSequence([*_RadiographDescriptors(source)])
    group = hd.sr.ContainerContentItem(name=codes_dict.DCM.ImageLibraryGroup, relationship_type=contains)
    group.ContentSequence = hd.sr.ContentSequence([image])
    library = hd.sr.ContainerContentItem(name=codes_dict.DCM.ImageLibrary, relationship_type=contains)
    library.ContentSequence = hd.sr.ContentSequence([group])
    return library


# ------------------------------------------------------------------------------------------------- read
def read_sr(dataset: Dataset) -> ReportedFindings:
    """Our findings back from an SR: exact probabilities, thresholds, decisions, CTR. pydicom only."""
    if str(dataset.get("SOPClassUID", "")) not in TID1500_SR_CLASSES:
        raise SRReadError(
            f"not a Comprehensive / Enhanced SR (SOP Class {dataset.get('SOPClassUID', 'missing')})"
        )
    template = dataset.get("ContentTemplateSequence")
    if not template or str(template[0].get("TemplateIdentifier", "")) != "1500":
        raise SRReadError("not a TID 1500 Measurement Report")
    probabilities: dict[str, float] = {}
    thresholds: dict[str, float] = {}
    present: dict[str, bool] = {}
    ctr: float | None = None
    texts: dict[str, str] = {}
    for group in _measurement_groups(dataset):
        items = list(_flatten(group.ContentSequence))
        finding = _finding_type(items)
        for item in items:
            concept = item.ConceptNameCodeSequence[0]
            if item.ValueType == "TEXT":
                texts[str(concept.CodeValue)] = str(item.TextValue)
            elif item.ValueType == "NUM" and concept.CodeValue == codes.CARDIOTHORACIC_RATIO.code.value:
                ctr = _number(item)
            elif finding and item.ValueType == "NUM" and concept.CodeValue == codes.PROBABILITY.code.value:
                probabilities[finding] = _number(item)
            elif (
                finding
                and item.ValueType == "NUM"
                and concept.CodeValue == codes.DECISION_THRESHOLD.code.value
            ):
                thresholds[finding] = _number(item)
            elif (
                finding
                and item.ValueType == "CODE"
                and codes.finding_for_code(str(concept.CodeValue), str(concept.CodingSchemeDesignator))
                == finding
            ):
                present[finding] = str(item.ConceptCodeSequence[0].CodeValue) == codes.PRESENT.code.value
    missing = [f for f in FINDINGS if f not in probabilities or f not in thresholds or f not in present]
    if missing:
        raise SRReadError(f"SR lacks probability, threshold or decision for: {', '.join(missing)}")
    library = _image_library_uids(dataset)
    return ReportedFindings(
        findings=[FindingPrediction(f, probabilities[f], thresholds[f]) for f in FINDINGS],
        present=present,
        ctr=ctr,
        algorithm_name=texts.get("111001", ""),  # Algorithm Name
        algorithm_version=texts.get("111003", ""),  # Algorithm Version
        source_sop_instance_uid=library[0] if library else "",
    )


def _measurement_groups(dataset: Dataset) -> list[Dataset]:
    for item in dataset.get("ContentSequence", []):
        if item.ConceptNameCodeSequence[0].CodeValue == "126010":  # Imaging Measurements
            return [g for g in item.ContentSequence if g.ConceptNameCodeSequence[0].CodeValue == "125007"]
    raise SRReadError("SR has no Imaging Measurements container")


def _flatten(items) -> Iterator[Dataset]:
    for item in items:
        yield item
        yield from _flatten(item.get("ContentSequence", []))


def _finding_type(items: list[Dataset]) -> str | None:
    for item in items:
        if item.ValueType == "CODE" and item.ConceptNameCodeSequence[0].CodeValue == "121071":  # Finding
            value = item.ConceptCodeSequence[0]
            return codes.finding_for_code(str(value.CodeValue), str(value.CodingSchemeDesignator))
    return None


def _number(item: Dataset) -> float:
    measured = item.MeasuredValueSequence[0]
    if "FloatingPointValue" in measured:
        return float(measured.FloatingPointValue)
    return float(measured.NumericValue)


def _image_library_uids(dataset: Dataset) -> list[str]:
    uids = []
    for item in dataset.get("ContentSequence", []):
        if item.ConceptNameCodeSequence[0].CodeValue == "111028":  # Image Library
            for group in item.get("ContentSequence", []):
                for image in group.get("ContentSequence", []):
                    if image.ValueType == "IMAGE":
                        uids.append(str(image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
    return uids


def evidence(dataset: Dataset) -> list[tuple[str, str, str]]:
    """(series UID, SOP class UID, SOP instance UID) of every instance an SR lists as evidence: for ours,
    the source radiograph and the SEGs (current requested procedure), the pictures and the presentation
    state (pertinent other)."""
    found = []
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in dataset.get(keyword, []):
            for series in study.get("ReferencedSeriesSequence", []):
                for item in series.get("ReferencedSOPSequence", []):
                    found.append(
                        (str(series.SeriesInstanceUID), str(item.ReferencedSOPClassUID),
                         str(item.ReferencedSOPInstanceUID))
                    )  # fmt: skip
    return found


def content_values(dataset: Dataset) -> tuple[dict[str, str], dict[str, str]]:
    """TEXT values and CODE values of the content tree, by concept code (first occurrence)."""
    texts: dict[str, str] = {}
    coded: dict[str, str] = {}
    stack = list(dataset.get("ContentSequence", []))
    while stack:
        item = stack.pop(0)
        concept = item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else None
        if concept and item.get("ValueType") == "TEXT":
            texts.setdefault(str(concept), str(item.TextValue))
        elif concept and item.get("ValueType") == "CODE":
            coded.setdefault(str(concept), str(item.ConceptCodeSequence[0].CodeValue))
        stack.extend(item.get("ContentSequence", []))
    return texts, coded
