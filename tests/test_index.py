"""The results index: SR results of real explanations ingested idempotently, then queried."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from pydicom import dcmread

from cxrxai.cli import main
from cxrxai.dicom.result_objects import write_dicom_results
from cxrxai.dicom.sr import read_sr
from cxrxai.index import ResultsIndex
from cxrxai.io import read_radiograph
from cxrxai.samples import chest_image, radiograph_dataset
from tests.dicom_validation import needs_dciodvfy


def _results(explainer, folder: Path, count: int) -> list[Path]:
    """SR, SEG, SC and GSPS of `count` explained radiographs (two patients, two study dates)."""
    srs = []
    for i in range(count):
        dataset = radiograph_dataset(
            chest_image(64, 56, seed=i), patient_id=f"P{i % 2}", uid_seed=f"index-{i}"
        )
        dataset.StudyDate = "20260105" if i < 2 else "20260610"
        radiograph = read_radiograph(dataset)
        explanation = explainer.explain(radiograph, methods=("gradcam",))
        paths = write_dicom_results(explanation, dataset, radiograph.pixels, folder / str(i))
        srs += [p for p in paths if p.name.startswith("SR-")]
    return srs


def test_ingest_is_idempotent_and_query_filters(explainer, tmp_path):
    srs = _results(explainer, tmp_path / "results", 3)
    index = ResultsIndex(tmp_path / "index.sqlite")
    report = index.ingest([tmp_path / "results"])
    assert report.added == 3
    # the SEG and SC files beside each SR are attached to it; the GSPS is skipped with a reason
    modalities = [dcmread(p, stop_before_pixels=True).Modality for p in (tmp_path / "results").rglob("*.dcm")]
    assert report.attached == modalities.count("SEG") + modalities.count("OT") > 3
    assert len(report.skipped) == modalities.count("PR") == 3
    assert all("not a Comprehensive" in why for _, why in report.skipped)
    again = index.ingest([tmp_path / "results"])
    assert again.added == 0 and again.unchanged == 3 and again.attached == 0
    objects = index.objects([str(dcmread(srs[0]).SOPInstanceUID)])
    assert {o.kind for o in objects} == {"SR", "SEG", "SC"} and all(Path(o.path).is_file() for o in objects)
    assert {str(dcmread(o.path, stop_before_pixels=True).SOPInstanceUID) for o in objects} == {
        o.sop_instance_uid for o in objects
    }

    everything = index.query()
    assert len(everything) == 3 * 14
    truth = read_sr(dcmread(srs[0]))
    row = everything[(everything.sop_instance_uid == truth.source_sop_instance_uid)]
    by_name = dict(zip(row.finding, row.probability, strict=True))
    assert by_name == {f.name: f.probability for f in truth.findings}  # exact doubles survive
    assert set(row.model_hash) == {explainer.bundle.content_hash} and set(row.modality) == {"CR"}
    source = dcmread(srs[0]).CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert set(row.view_position) == {"PA"} and set(row.series_instance_uid) == {source.SeriesInstanceUID}

    edema = index.query(finding="Edema", sort="probability", descending=True)
    assert list(edema.finding.unique()) == ["Edema"] and edema.probability.is_monotonic_decreasing
    cut = float(edema.probability.median())
    high = index.query(finding="Edema", min_probability=cut)
    assert (high.probability >= cut).all() and 0 < len(high) <= 3
    one_patient = index.query(patient_id="P1")
    assert len(one_patient) == 14 and one_patient.patient_id.eq("P1").all()
    summer = index.query(date_from=dt.date(2026, 6, 1))
    assert set(summer.study_date.astype(str)) == {"2026-06-10"} and len(summer) == 14
    present = index.query(decision=True)
    assert present.present.all()
    assert len(index.query(limit=5)) == 5


def test_cli_ingest_and_query_formats(explainer, tmp_path, capsys):
    _results(explainer, tmp_path / "results", 2)
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    assert main(["results", "ingest", str(tmp_path / "results"), "--index", url]) == 0
    assert "2 added" in capsys.readouterr().out
    assert main(["results", "query", "--index", url, "--finding", "Cardiomegaly", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and {r["finding"] for r in rows} == {"Cardiomegaly"}
    assert (
        main(["results", "query", "--index", url, "--from", "2026-01-01", "--format", "csv", "--limit", "3"])
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("study_instance_uid,") and len(lines) == 4
    parquet = tmp_path / "edema.parquet"
    assert main(["results", "query", "--index", url, "--finding", "Edema", "--format", "parquet",
                 "--out", str(parquet)]) == 0  # fmt: skip
    table = pd.read_parquet(parquet)
    assert len(table) == 2 and set(table.finding) == {"Edema"}
    assert table.probability.tolist() == ResultsIndex(url).query(finding="Edema").probability.tolist()
    assert main(["results", "query", "--index", url, "--format", "parquet"]) == 2  # needs --out
    capsys.readouterr()
    # the default table fits a terminal: short UIDs, dates as dates, decisions in words; CSV stays complete
    assert main(["results", "query", "--index", url]) == 0
    table_lines = capsys.readouterr().out.splitlines()
    assert len(table_lines) == 29 and max(map(len, table_lines)) <= 150
    header = table_lines[0].split()
    assert header[:4] == ["study_date", "patient_id", "study", "image"] and "decision" in header
    study = ResultsIndex(url).query().study_instance_uid.iloc[0]
    assert f"…{study[-10:]}" in table_lines[1] and study not in table_lines[1]
    assert (
        main(["results", "query", "--index", url, "--columns", "finding", "probability", "--limit", "2"]) == 0
    )
    assert capsys.readouterr().out.split()[:2] == ["finding", "probability"]
    assert main(["results", "query", "--index", url, "--wide", "--limit", "1"]) == 0
    wide = capsys.readouterr().out
    assert study in wide and "model_hash" in wide
    assert main(["results", "query", "--index", url, "--columns", "colour"]) == 2
    assert "unknown column 'colour'; one of: study_instance_uid" in capsys.readouterr().err


def test_bad_queries_are_one_readable_line(tmp_path, capsys):
    url = str(tmp_path / "x.sqlite")
    assert main(["results", "query", "--index", url, "--finding", "Headache"]) == 2
    assert "unknown finding 'Headache'" in capsys.readouterr().err
    assert main(["results", "query", "--index", url, "--sort", "colour"]) == 2
    assert main(["results", "ingest", str(tmp_path / "missing"), "--index", url]) == 2
    assert "no such file or folder" in capsys.readouterr().err.splitlines()[-1]
    with pytest.raises(SystemExit):
        main(["results", "query", "--index", url, "--from", "yesterday"])


def test_postgresql_and_sqlite_give_the_same_answers(explainer, tmp_path):
    from tests.postgres_server import postgres

    _results(explainer, tmp_path / "results", 3)
    sqlite = ResultsIndex(tmp_path / "index.sqlite")
    sqlite.ingest([tmp_path / "results"])
    with postgres() as url:
        server = ResultsIndex(url)
        assert server.ingest([tmp_path / "results"]).added == 3
        assert server.ingest([tmp_path / "results"]).unchanged == 3
        queries = [
            {},
            {"finding": "Edema", "sort": "probability", "descending": True},
            {"decision": True},
            {"date_from": dt.date(2026, 6, 1)},
            {"patient_id": "P1", "limit": 5},
        ]
        for filters in queries:
            ours, theirs = sqlite.query(**filters), server.query(**filters)
            assert ours.astype(str).equals(theirs.astype(str)), filters
        server.engine.dispose()


def test_stats_prevalence_distribution_and_trend(explainer, tmp_path, capsys):
    from cxrxai.index.stats import finding_summary, prevalence_by_month

    _results(explainer, tmp_path / "results", 3)
    index = ResultsIndex(tmp_path / "index.sqlite")
    index.ingest([tmp_path / "results"])
    rows = index.query()
    summary = finding_summary(rows).set_index("finding")
    for name, group in rows.groupby("finding"):
        assert summary.loc[name, "images"] == 3
        assert summary.loc[name, "positives"] == int(group.present.sum())
        assert summary.loc[name, "mean_probability"] == pytest.approx(group.probability.mean())
    monthly = prevalence_by_month(rows)
    assert list(monthly.index) == ["2026-01", "2026-06"]  # two images in January, one in June
    june = rows[rows.study_date.astype(str) == "2026-06-10"].set_index("finding")
    assert (monthly.loc["2026-06"] == june.loc[monthly.columns, "present"].astype(float)).all()
    url = str(tmp_path / "index.sqlite")
    assert main(["results", "stats", "--index", url, "--plots", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "prevalence by study month" in out and "Cardiomegaly" in out
    for name in ("prevalence_by_month.png", "score_distributions.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 5000
    assert main(["results", "stats", "--index", str(tmp_path / "empty.sqlite")]) == 2
    assert "ingest SR results first" in capsys.readouterr().err


def test_an_index_from_before_migrations_is_upgraded_keeping_its_rows(tmp_path):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine, text

    from cxrxai.index.database import MIGRATIONS
    from cxrxai.index.schema import Base

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with create_engine(url).begin() as connection:  # the first released schema, with one indexed image
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(text(
            "INSERT INTO images VALUES ('9.1', '9.2', '9.3', 'P7', '2026-03-04', 'DX', 'cxrxai', '1.0', "
            "'sha256:ab', 0.52, 'old/sr.dcm', '2026-03-05 10:00:00')"
        ))  # fmt: skip
        connection.execute(text("INSERT INTO findings VALUES ('9.1', 'Edema', 0.25, 0.5, 0)"))
        connection.execute(text("DROP TABLE alembic_version"))  # as create_all made it, unversioned
    index = ResultsIndex(url)
    rows = index.query()
    assert rows.to_dict("records") == [{
        "study_instance_uid": "9.3", "series_instance_uid": None, "sop_instance_uid": "9.2",
        "sr_sop_instance_uid": "9.1", "patient_id": "P7", "study_date": dt.date(2026, 3, 4), "modality": "DX",
        "view_position": None, "model_name": "cxrxai", "model_version": "1.0", "model_hash": "sha256:ab",
        "cardiothoracic_ratio": 0.52, "processing_seconds": None, "finding": "Edema", "probability": 0.25,
        "threshold": 0.5, "present": False,
    }]  # fmt: skip
    with index.engine.begin() as connection:  # the upgraded tables are exactly the models
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")  # and the migration can be taken back
        assert "result_objects" not in {
            r[0] for r in connection.execute(text("SELECT name FROM sqlite_master"))
        }
    assert ResultsIndex(url).query().finding.tolist() == ["Edema"]


PHI = {  # planted in the source radiographs: none of it may leave in an export
    "PatientName": "XQZDOE^JANIQUE", "PatientBirthDate": "19580214", "AccessionNumber": "ACC998877",
    "ReferringPhysicianName": "HOUSEXQ^GREGORIUS", "StudyID": "SID4242", "InstitutionName": "St Elsewhere",
    "StudyDescription": "Chest for Janique Xqzdoe", "OperatorsName": "NURSEXQ^RATCHED",
    "StationName": "WARD7XRAY", "InstitutionAddress": "12 Harley Street", "OtherPatientIDs": "OTHER-55-66",
    "PatientAddress": "1 Elm Row", "PatientTelephoneNumbers": "555-0199", "ImageComments": "call Dr Who",
}  # fmt: skip


def _strings(dataset) -> list[str]:
    """Every string value of a dataset: file meta, all elements, all sequence items, all values."""
    found: list[str] = []

    def collect(ds, element) -> None:
        if element.VR in ("SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN") or element.value is None:
            return
        values = element.value if element.VM > 1 else [element.value]
        found.extend(str(v) for v in values)

    dataset.file_meta.walk(collect)
    dataset.walk(collect)
    return found


@needs_dciodvfy
def test_export_is_de_identified_consistent_and_complete(explainer, tmp_path, capsys):
    from cxrxai.index.export import export_cohort
    from tests.dicom_validation import new_errors

    originals, uids, dates = {}, set(), set()
    for i, (patient, date) in enumerate(
        [("MRN-0001", "20260105"), ("MRN-0001", "20260301"), ("MRN-0002", "20260610")]
    ):
        dataset = radiograph_dataset(chest_image(64, 56, seed=i), patient_id=patient, uid_seed=f"export-{i}")
        for keyword, value in PHI.items():
            setattr(dataset, keyword, value)
        dataset.StudyDate = dataset.SeriesDate = dataset.ContentDate = date
        radiograph = read_radiograph(dataset)
        explanation = explainer.explain(radiograph, methods=("gradcam",))
        written = write_dicom_results(explanation, dataset, radiograph.pixels, tmp_path / "results" / str(i))
        for path in written:
            result = dcmread(path)
            originals[str(result.SOPInstanceUID)] = path
            uids |= {
                v
                for v in _strings(result)
                if v.startswith("1.2.826.0.1.3680043.8.498.") or v == dataset.SOPInstanceUID
            }
        uids |= {dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID}
        dates.add(date)
    index = ResultsIndex(tmp_path / "index.sqlite")
    index.ingest([tmp_path / "results"])
    key = "a-research-key-of-enough-length"
    report = export_cohort(index, tmp_path / "cohort", key, heatmaps=True)
    assert report.images == 3 and report.patients == 2
    exported = sorted((tmp_path / "cohort" / "dicom").rglob("*.dcm"))
    kinds = [dcmread(p, stop_before_pixels=True).Modality for p in exported]
    assert kinds.count("SR") == 3 and kinds.count("SEG") >= 3 and kinds.count("OT") >= 3 and "PR" not in kinds
    forbidden = [*PHI.values(), "MRN-0001", "MRN-0002", "XQZDOE", "JANIQUE", "HOUSEXQ", "NURSEXQ", *dates]
    for path in exported:
        dataset = dcmread(path)
        strings = _strings(dataset)
        for value in strings:
            assert not any(f.lower() in value.lower() for f in forbidden), (path.name, value)
            assert value not in uids, (path.name, value)  # every UID replaced, references included
        assert dataset.PatientIdentityRemoved == "YES" and "ImageComments" not in dataset
    table = pd.read_csv(tmp_path / "cohort" / "cohort.csv", dtype=str)
    forbidden += [f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in dates]  # the table writes dates as ISO
    for column in table.columns:  # the table holds no PHI either
        for value in table[column].dropna():
            assert not any(f.lower() in value.lower() for f in forbidden) and value not in uids, (
                column,
                value,
            )
    # pseudonyms: one per patient, the DICOM's; dates shifted per patient, intervals kept
    images = table.drop_duplicates("sr_sop_instance_uid").sort_values("study_date")
    assert images.patient_id.nunique() == 2
    counts = images.groupby("patient_id").size()
    assert sorted(counts) == [1, 2]
    shifted = pd.to_datetime(images[images.patient_id == counts.idxmax()].study_date)
    assert (shifted.iloc[1] - shifted.iloc[0]).days == (dt.date(2026, 3, 1) - dt.date(2026, 1, 5)).days
    srs = {str(d.SOPInstanceUID): d for d in (dcmread(p) for p in exported) if d.Modality == "SR"}
    assert set(images.sr_sop_instance_uid) == set(srs)
    for row in images.itertuples():
        assert srs[row.sr_sop_instance_uid].PatientID == row.patient_id
    # the findings are exactly the index's
    ours = table.sort_values(["finding", "probability"]).probability.astype(float).tolist()
    assert ours == index.query().sort_values(["finding", "probability"]).probability.tolist()
    # exported objects stay valid: dciodvfy finds nothing new compared with the originals
    sr_path = next(p for p in exported if dcmread(p, stop_before_pixels=True).Modality == "SR")
    assert new_errors(sr_path, next(p for p in originals.values() if "SR-" in p.name)) == []
    seg_path = next(p for p in exported if dcmread(p, stop_before_pixels=True).Modality == "SEG")
    assert new_errors(seg_path, next(p for p in originals.values() if "SEG-" in p.name)) == []
    # the same key gives the same pseudonyms; another key others; the CLI reads the key from a file
    (tmp_path / "key").write_text(key)
    url = str(tmp_path / "index.sqlite")
    assert main(["results", "export", "--index", url, "--out", str(tmp_path / "again"),
                 "--key-file", str(tmp_path / "key"), "--finding", "Edema"]) == 0  # fmt: skip
    assert "3 images of 2 patients" in capsys.readouterr().out
    again = pd.read_csv(tmp_path / "again" / "cohort.csv", dtype=str)
    assert set(again.patient_id) == set(table.patient_id) and set(again.study_date) == set(table.study_date)
    other = export_cohort(index, tmp_path / "other", "another-key-of-enough-length", patient_id="MRN-0002")
    assert other.images == 1
    assert not set(pd.read_csv(tmp_path / "other" / "cohort.csv", dtype=str).patient_id) & set(
        table.patient_id
    )
    assert (
        main(
            ["results", "export", "--index", str(tmp_path / "index.sqlite"), "--out", str(tmp_path / "again")]
        )
        == 2
    )
    assert "not empty" in capsys.readouterr().err


def test_ingest_from_orthanc_by_c_find_and_c_get_is_idempotent(explainer, tmp_path, capsys):
    from tests.node_peers import free_port, orthanc, rest

    srs = _results(explainer, tmp_path / "results", 2)
    local = ResultsIndex(tmp_path / "local.sqlite")
    local.ingest([tmp_path / "results"])
    with orthanc(tmp_path / "orthanc", {"cxrxai": ("CXRXAI", "127.0.0.1", free_port())}) as pacs:
        for path in sorted((tmp_path / "results").rglob("*.dcm")):  # SR, SEG, SC and GSPS of both images
            rest(f"{pacs['http']}/instances", path.read_bytes())
        peer = f"ORTHANC@127.0.0.1:{pacs['dicom_port']}"
        url = str(tmp_path / "pacs.sqlite")
        command = [
            "results",
            "ingest",
            "--index",
            url,
            "--pacs",
            peer,
            "--into",
            str(tmp_path / "got"),
            "--heatmaps",
        ]
        assert main(command) == 0
        out = capsys.readouterr().out
        attached = sum(1 for o in local.objects() if o.kind != "SR")
        assert f"2 SRs found, 0 already indexed, {2 + attached} objects retrieved, 2 added" in out
        assert f"{attached} result files attached, 0 failed" in out
        assert main(command) == 0  # a second run retrieves nothing
        assert "2 SRs found, 2 already indexed, 0 objects retrieved, 0 added" in capsys.readouterr().out
        assert main(["results", "ingest", "--index", url, "--pacs", "ORTHANC@127.0.0.1:1"]) == 2
        assert "refused or did not answer" in capsys.readouterr().err
    from_pacs = ResultsIndex(url)
    assert from_pacs.query().astype(str).equals(local.query().astype(str))  # the same rows either way
    retrieved = {o.sop_instance_uid: o.path for o in from_pacs.objects()}
    assert retrieved.keys() == {o.sop_instance_uid for o in local.objects()}
    for uid, path in retrieved.items():  # every file is the object it claims, retrieved intact
        assert str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) == uid
    assert dcmread(retrieved[str(dcmread(srs[0]).SOPInstanceUID)]) == dcmread(srs[0])
