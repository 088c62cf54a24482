"""The findings as a DICOM Comprehensive 3D SR with a TID 1500 Measurement Report, and back.

Each finding shown with a map and each anatomy structure is a planar-ROI measurement group (TID 1410) with
its outline on the source image; the other findings are in the Qualitative Evaluations container.
docs/conformance.md gives the structure and why it is the one viewers (OHIF) can show. Built with
highdicom; read back with pydicom alone, so any TID 1500 SR with our codes reads, and Slicer needs nothing
else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes as codes_dict
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian

from cxrxai.dicom import codes
from cxrxai.dicom.common import DISCLAIMER, SERIES, Device, finish_result, result_uid
from cxrxai.explanation import FindingPrediction
from cxrxai.io.spacing import radiograph_spacing
from cxrxai.labels import FINDINGS

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
# the SR classes a TID 1500 report can come in: Comprehensive 3D, Comprehensive, Enhanced
TID1500_SR_CLASSES = (COMPREHENSIVE_3D_SR, "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.22")
IMAGING_MEASUREMENTS = "126010"
MEASUREMENT_GROUP = "125007"
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
DEVICE_SERIAL_NUMBER = "121016"  # DCM: Device Observer Serial Number, where our SRs carry the bundle hash
# The tracking identifier Cornerstone3D (OHIF's toolkit) gives a closed freehand outline. OHIF loads a
# group into its measurement panel only when the identifier names one of its tools; the group's own
# identity is its Tracking UID, and its label is the Comment (DCM 121106) OHIF shows.
FREEHAND_OUTLINE = "Cornerstone3DTools@^0.1.0:PlanarFreehandROI"


# a measurement group: TID 1501 (numbers, coordinates on the first) or TID 1410 (its own region)
Group = hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations


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


def _measurement(
    name: Code | hd.sr.CodedConcept, value: float, region: hd.sr.CoordinatesForMeasurement | None = None
) -> hd.sr.Measurement:
    """A unitless measurement whose exact double rides in Floating Point Value (0040,A161) next to the
    16-character decimal string, so the probability read back is bit-identical; `region`, when given, is
    the outline it is INFERRED FROM (TID 300)."""
    measurement = hd.sr.Measurement(
        name=name,
        value=float(value),
        unit=codes.NO_UNITS.concept,
        referenced_coordinates=[region] if region is not None else None,
    )
    measurement[0].MeasuredValueSequence[0].FloatingPointValue = float(value)
    return measurement


@dataclass(frozen=True)
class FindingOutline:
    """Where a finding's map is hot on the source: a closed outline (N x 2, column, row in DICOM pixel
    units) of the region >= `level` of the normalised map of `method` at `layer`."""

    points: np.ndarray
    method: str
    layer: str
    level: float


def build_sr(
    source: Dataset,
    findings: Sequence[FindingPrediction],
    ctr: float | None,
    device: Device,
    outlines: Mapping[str, FindingOutline] | None = None,
    anatomy_outlines: Mapping[str, np.ndarray] | None = None,
    segmentations: Sequence[Dataset] = (),
    pictures: Sequence[Dataset] = (),
) -> hd.SOPClass:
    """A TID 1500 Measurement Report on the source radiograph, joining its study, in its own series.

    Every group in Imaging Measurements has a closed SCOORD polyline on the source image, so every viewer
    that draws TID 1500 measurements (OHIF among them, which stops at a group without image coordinates)
    shows them: one group per finding in `outlines` (TID 1501: its probability INFERRED FROM the hot
    region, threshold, decision), one per anatomy structure in `anatomy_outlines` (TID 1410 with the
    outline as its region; the heart with the cardiothoracic ratio as TID 1501 like a finding). Each has a
    Comment naming it and the tracking identifier OHIF needs to list it in its measurement panel. The
    findings without an outline are reported in the Qualitative
    Evaluations container: per finding its decision (CODE) with probability and threshold (NUM) as its
    properties. The SEGs join the evidence; the Secondary Capture `pictures` and the presentation state
    are Pertinent Other Evidence, so every result can be found from the SR.
    """
    if [f.name for f in findings] != list(FINDINGS):
        raise ValueError("an SR must report all 14 findings in CheXpert order")
    outlines = outlines or {}
    anatomy_outlines = anatomy_outlines or {}
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
    groups: list[Group] = []
    for finding in findings:
        outline = outlines.get(finding.name)
        if outline is None:
            continue
        decision = "present" if finding.present else "absent"
        region = _inferred_from(source, outline.points)
        group: Group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=result_uid(source_uid, device.content_hash, "sr", f"finding:{finding.name}"),
                identifier=FREEHAND_OUTLINE,
            ),
            finding_type=codes.FINDING_CODES[finding.name].concept,
            algorithm_id=algorithm,
            qualitative_evaluations=[_decision(finding)],
            measurements=_finding_measurements(finding, region),
        )
        _comment(
            group,
            f"{finding.name}: {decision}, p={finding.probability:.2f} "
            f"({outline.method} {outline.layer} >= {outline.level:.1f})",
        )
        groups.append(group)
    for name, points in anatomy_outlines.items():
        tracking = hd.sr.TrackingIdentifier(
            uid=result_uid(source_uid, device.content_hash, "sr", f"anatomy:{name}"),
            identifier=FREEHAND_OUTLINE,
        )
        finding_type = codes.ANATOMY_CODES[name].concept
        if name == "Heart" and ctr is not None:
            group = hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                finding_type=finding_type,
                algorithm_id=algorithm,
                measurements=[
                    _measurement(codes.CARDIOTHORACIC_RATIO.concept, ctr, _inferred_from(source, points))
                ],
            )
            _comment(group, f"{name}, cardiothoracic ratio {ctr:.2f}")
        else:
            group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking,
                referenced_region=_region(source, points),
                finding_type=finding_type,
                algorithm_id=algorithm,
            )
            _comment(group, name)
        groups.append(group)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=[codes.PLAIN_RADIOGRAPHY.concept],
        # highdicom requires one group; without outlines the container is removed again below (TID 1500
        # makes Imaging Measurements optional when Qualitative Evaluations are present)
        imaging_measurements=groups or [_placeholder_group(algorithm)],
    )
    root = report[0]
    if not groups:
        root.ContentSequence = [
            item for item in root.ContentSequence
            if item.ConceptNameCodeSequence[0].CodeValue != IMAGING_MEASUREMENTS
        ]  # fmt: skip
    position = next(
        (
            i
            for i, item in enumerate(root.ContentSequence)
            if item.ConceptNameCodeSequence[0].CodeValue == IMAGING_MEASUREMENTS
        ),
        len(root.ContentSequence),
    )
    root.ContentSequence.insert(position, _image_library(source))
    unmeasured_ctr = ctr if ctr is not None and "Heart" not in anatomy_outlines else None
    others = [f for f in findings if f.name not in outlines]
    if others or unmeasured_ctr is not None:
        root.ContentSequence.append(_qualitative_evaluations(others, unmeasured_ctr))
    sr = _comprehensive_3d_sr(source, report[0], [source, *segmentations], device)
    finish_result(sr, source, device, "sr", image=False)
    if pictures:
        sr.PertinentOtherEvidenceSequence = _evidence(pictures)
    return sr


def _comprehensive_3d_sr(
    source: Dataset, root: Dataset, evidence: Sequence[Dataset], device: Device
) -> hd.SOPClass:
    """The Comprehensive 3D SR document around the content `root`, assembled with highdicom's public
    parts as `hd.sr.Comprehensive3DSR` assembles it, without that class's defensive deep copy, re-parse
    and evidence search of the content tree: 0.1 s of the 0.12 s an SR took at 512 rows (issue 32's
    object budget is 0.3 s for all objects), for a tree built here, used once, that references only the
    source. `tests/test_dicom_sr.py` checks that both give the same dataset."""
    uid = str(source.SOPInstanceUID)
    sr = hd.SOPClass(
        study_instance_uid=source.StudyInstanceUID,
        series_instance_uid=result_uid(uid, device.content_hash, "sr", "series"),
        series_number=SERIES["sr"][0],
        sop_instance_uid=result_uid(uid, device.content_hash, "sr", "instance"),
        sop_class_uid=COMPREHENSIVE_3D_SR,
        instance_number=1,
        manufacturer=device.manufacturer,
        modality="SR",
        transfer_syntax_uid=ExplicitVRLittleEndian,
        patient_id=source.PatientID,
        patient_name=source.PatientName,
        patient_birth_date=source.PatientBirthDate,
        patient_sex=source.PatientSex,
        accession_number=source.AccessionNumber,
        study_id=source.StudyID,
        study_date=source.StudyDate,
        study_time=source.StudyTime,
        referring_physician_name=getattr(source, "ReferringPhysicianName", None),
        specific_character_set=source.get("SpecificCharacterSet"),
    )
    sr.CompletionFlag = "COMPLETE"
    sr.VerificationFlag = "UNVERIFIED"
    sr.PreliminaryFlag = "PRELIMINARY"
    for element in root:
        sr[element.tag] = element
    sr.CurrentRequestedProcedureEvidenceSequence = _evidence(
        [item for item in evidence if item.StudyInstanceUID == source.StudyInstanceUID]
    )
    sr.PerformedProcedureCodeSequence = []
    sr.ReferencedPerformedProcedureStepSequence = []
    sr.copy_patient_and_study_information(source)
    equipment = [hd.ContributingEquipment.for_highdicom()]
    # highdicom's own rule: a source whose acquisition equipment it cannot describe contributes none
    with contextlib.suppress(Exception):
        equipment.insert(0, hd.ContributingEquipment.for_image_acquisition(source))
    sr.ContributingEquipmentSequence = equipment
    return sr


def _placeholder_group(
    algorithm: hd.sr.AlgorithmIdentification,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="none"), algorithm_id=algorithm
    )


def _finding_measurements(
    finding: FindingPrediction, region: hd.sr.CoordinatesForMeasurement | None = None
) -> list[hd.sr.Measurement]:
    return [
        _measurement(codes.PROBABILITY_OF[finding.name].concept, finding.probability, region),
        _measurement(codes.DECISION_THRESHOLD.concept, finding.threshold),
    ]


def _decision(finding: FindingPrediction) -> hd.sr.QualitativeEvaluation:
    concept = codes.FINDING_CODES[finding.name].concept
    return hd.sr.QualitativeEvaluation(
        name=concept, value=(codes.PRESENT if finding.present else codes.ABSENT).concept
    )


def _closed(points: np.ndarray) -> np.ndarray:
    """A closed polyline: first point repeated last (PS3.3 C.18.6.1.1)."""
    points = np.asarray(points, dtype=np.float32)
    if not np.array_equal(points[0], points[-1]):
        points = np.vstack([points, points[:1]])
    return points


def _region(source: Dataset, points: np.ndarray) -> hd.sr.ImageRegion:
    """An outline that is a planar-ROI group's own region (TID 1410)."""
    return hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=_closed(points),
        source_image=hd.sr.SourceImageForRegion(source.SOPClassUID, source.SOPInstanceUID),
    )


def _inferred_from(source: Dataset, points: np.ndarray) -> hd.sr.CoordinatesForMeasurement:
    """An outline that a measurement is INFERRED FROM (TID 300 in a TID 1501 group): how a group that
    carries numbers gets image coordinates, since TID 1410 forbids coordinates on its measurements and
    OHIF takes a group's geometry from its first NUM item when it has one."""
    return hd.sr.CoordinatesForMeasurement(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
        graphic_data=_closed(points),
        source_image=hd.sr.SourceImageForRegion(source.SOPClassUID, source.SOPInstanceUID),
    )


def _comment(group: Group, text: str) -> None:
    """The group's label for a reader: a Comment (DCM 121106) TEXT item, which OHIF shows as the
    measurement's name."""
    group[0].ContentSequence.append(
        hd.sr.TextContentItem(
            name=codes_dict.DCM.Comment, value=text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
        )
    )


def _qualitative_evaluations(findings: Sequence[FindingPrediction], ctr: float | None) -> Dataset:
    """TID 1500's Qualitative Evaluations container: per finding its decision, with its probability and
    threshold as HAS PROPERTIES children; the cardiothoracic ratio when no heart outline carries it."""
    has_properties = hd.sr.RelationshipTypeValues.HAS_PROPERTIES
    items: list[Dataset] = []
    for finding in findings:
        evaluation = _decision(finding)[0]
        evaluation.RelationshipType = hd.sr.RelationshipTypeValues.CONTAINS.value
        children: list[Dataset] = []
        for measurement in _finding_measurements(finding):
            measurement[0].RelationshipType = has_properties.value
            children.append(measurement[0])
        evaluation.ContentSequence = DicomSequence(children)
        items.append(evaluation)
    if ctr is not None:
        ratio = _measurement(codes.CARDIOTHORACIC_RATIO.concept, ctr)[0]
        ratio.RelationshipType = hd.sr.RelationshipTypeValues.CONTAINS.value
        items.append(ratio)
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = DicomSequence(items)
    return container


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
    Orientation and Imager Pixel Spacing, which many CRs lack; we never invent a spacing. The spacing is
    the one our other objects carry (`cxrxai.io.spacing`)."""

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
        spacing = radiograph_spacing(dataset)
        if spacing is not None:
            for name, value in (
                (codes_dict.DCM.HorizontalPixelSpacing, spacing.column),
                (codes_dict.DCM.VerticalPixelSpacing, spacing.row),
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
    texts, _ = content_values(dataset)
    for finding, items in _finding_entries(dataset):
        for item in items:
            concept = item.ConceptNameCodeSequence[0]
            value, scheme = str(concept.CodeValue), str(concept.CodingSchemeDesignator)
            if item.ValueType == "NUM" and value == codes.CARDIOTHORACIC_RATIO.code.value:
                ctr = _number(item)
            elif item.ValueType == "NUM" and (named := codes.finding_for_probability_code(value, scheme)):
                probabilities[named] = _number(item)
            elif finding and item.ValueType == "NUM" and value == codes.PROBABILITY.code.value:
                probabilities[finding] = _number(item)
            elif finding and item.ValueType == "NUM" and value == codes.DECISION_THRESHOLD.code.value:
                thresholds[finding] = _number(item)
            elif finding and item.ValueType == "CODE" and codes.finding_for_code(value, scheme) == finding:
                present[finding] = str(item.ConceptCodeSequence[0].CodeValue) == codes.PRESENT.code.value
    missing = [f for f in FINDINGS if f not in probabilities or f not in thresholds or f not in present]
    if missing:
        raise SRReadError(f"SR lacks probability, threshold or decision for: {', '.join(missing)}")
    library = _image_library_uids(dataset)
    return ReportedFindings(
        findings=[FindingPrediction(f, probabilities[f], thresholds[f]) for f in FINDINGS],
        present=present,
        ctr=ctr,
        # Algorithm Name / Version, else the observer device's Name / Model Name (which our SRs set alike)
        algorithm_name=texts.get("111001") or texts.get("121013", ""),
        algorithm_version=texts.get("111003") or texts.get("121015", ""),
        source_sop_instance_uid=library[0] if library else "",
    )


def _finding_entries(dataset: Dataset) -> Iterator[tuple[str | None, list[Dataset]]]:
    """(finding or None, content items) of each measurement group, and of each finding's decision in the
    Qualitative Evaluations container (the decision item with its properties)."""
    for item in dataset.get("ContentSequence", []):
        concept = item.ConceptNameCodeSequence[0]
        if concept.CodeValue == IMAGING_MEASUREMENTS:
            for group in item.get("ContentSequence", []):
                if group.ConceptNameCodeSequence[0].CodeValue == MEASUREMENT_GROUP:
                    items = list(_flatten(group.ContentSequence))
                    yield _finding_type(items), items
        elif (concept.CodeValue, concept.CodingSchemeDesignator) == (
            QUALITATIVE_EVALUATIONS.value,
            QUALITATIVE_EVALUATIONS.scheme_designator,
        ):
            for evaluation in item.get("ContentSequence", []):
                name = evaluation.ConceptNameCodeSequence[0]
                finding = codes.finding_for_code(str(name.CodeValue), str(name.CodingSchemeDesignator))
                yield finding, list(_flatten([evaluation]))


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
