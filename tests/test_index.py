"""The results index: SR results of real explanations ingested idempotently, then queried."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pydicom import dcmread

from cxrxai.cli import main
from cxrxai.dicom.results import write_dicom_results
from cxrxai.dicom.sr import read_sr
from cxrxai.index import ResultsIndex
from cxrxai.io import read_radiograph
from cxrxai.samples import chest_image, radiograph_dataset


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
    assert len(report.skipped) > 3  # the SEG, SC and GSPS files beside each SR: skipped with a reason
    assert all("not a Comprehensive" in why for _, why in report.skipped)
    again = index.ingest([tmp_path / "results"])
    assert again.added == 0 and again.unchanged == 3

    everything = index.query()
    assert len(everything) == 3 * 14
    truth = read_sr(dcmread(srs[0]))
    row = everything[(everything.sop_instance_uid == truth.source_sop_instance_uid)]
    by_name = dict(zip(row.finding, row.probability, strict=True))
    assert by_name == {f.name: f.probability for f in truth.findings}  # exact doubles survive
    assert set(row.model_hash) == {explainer.bundle.content_hash} and set(row.modality) == {"CR"}

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
    import pandas as pd

    table = pd.read_parquet(parquet)
    assert len(table) == 2 and set(table.finding) == {"Edema"}
    assert table.probability.tolist() == ResultsIndex(url).query(finding="Edema").probability.tolist()
    assert main(["results", "query", "--index", url, "--format", "parquet"]) == 2  # needs --out


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
