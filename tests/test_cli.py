"""`cxrxai explain`: outputs per input, one readable line and a non-zero exit per bad input, others go on."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cxrxai.cli import main
from cxrxai.explanation import load_heatmaps
from cxrxai.labels import FINDINGS
from cxrxai.samples import chest_image, radiograph_dataset
from cxrxai.train.default_model import REAL_RADIOGRAPHS


@pytest.fixture()
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = folder / "chest.dcm"
    radiograph_dataset(chest_image(70, 50), photometric="MONOCHROME1", patient_name="Müller^Jürgen").save_as(
        good, enforce_file_format=True
    )
    ct = radiograph_dataset(chest_image(20, 20))
    ct.SOPClassUID = ct.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ct.Modality = "CT"
    ct.save_as(folder / "ct.dcm", enforce_file_format=True)
    (folder / "junk.dcm").write_bytes(b"garbage" * 10)
    return folder


def test_explain_writes_outputs_and_reports_bad_inputs(tiny_bundle, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "explain",
            str(inputs),
            "--out",
            str(out),
            "--bundle",
            str(tiny_bundle),
            "--findings",
            "cardiomegaly",
            "Pleural_Effusion",
        ]
    )
    assert code == 1
    err = [
        part.strip()
        for line in capsys.readouterr().err.splitlines()
        for part in line.split("\r")
        if part.strip()
    ]
    refusals = [
        line
        for line in err
        if line.startswith("cxrxai: ") and "warning" not in line and "inputs failed" not in line
    ]
    assert len(refusals) == 2
    assert any("ct.dcm: found Modality CT" in line for line in refusals)
    assert any("junk.dcm: not a DICOM file" in line for line in refusals)
    assert err[-1] == "cxrxai: 2 of 3 inputs failed"
    folder = out / "chest"
    predictions = json.loads((folder / "predictions.json").read_text())
    assert [f["name"] for f in predictions["findings"]] == list(FINDINGS)
    for f in predictions["findings"]:
        assert 0 <= f["probability"] <= 1 and f["present"] == (f["probability"] >= f["threshold"])
    assert predictions["source"]["rows"] == 70 and predictions["source"]["columns"] == 50
    assert (
        predictions["model"]["content_hash"].startswith("sha256:")
        and predictions["model"]["trained"] is False
    )
    assert predictions["source"]["SOPInstanceUID"]
    maps, scales, geometry, anatomy = load_heatmaps(folder / "heatmaps.npz")
    assert set(maps) == set(predictions["heatmaps"])
    assert {k.split("/")[2] for k in maps} >= {"Cardiomegaly", "Pleural Effusion", "Heart"}
    assert "gradcam/fused/Cardiomegaly" in maps and "crm/bottleneck/All Findings" in maps
    assert (geometry.source_rows, geometry.source_columns) == (70, 50)
    assert anatomy.shape == (3, 32, 32)
    for key, values in maps.items():
        assert values.max() <= 1.0 and values.min() >= 0.0
        assert (
            predictions["heatmaps"][key]["in_lung_fraction"] is None
            or 0 <= predictions["heatmaps"][key]["in_lung_fraction"] <= 1
        )
        assert scales[key] >= 0
    assert (folder / "overview.png").stat().st_size > 1000


def test_heatmaps_round_trip_through_npz(explainer, tmp_path):
    from cxrxai.io import read_radiograph

    path = tmp_path / "c.dcm"
    radiograph_dataset(chest_image(40, 60)).save_as(path, enforce_file_format=True)
    explanation = explainer.explain(read_radiograph(path), methods=["gradcam", "crm"], lung_mask=True)
    explanation.save(tmp_path / "r")
    maps, scales, geometry, _ = load_heatmaps(tmp_path / "r" / "heatmaps.npz")
    assert geometry == explanation.geometry
    for key, heatmap in explanation.heatmaps.items():
        np.testing.assert_allclose(
            maps[key] * scales[key], heatmap.values, rtol=2e-3, atol=2e-3 * max(scales[key], 1e-30)
        )
    assert any(k.startswith("gradcam+lungmask/") for k in maps)


def test_unknown_method_or_finding_is_one_line(tiny_bundle, inputs, tmp_path, capsys):
    assert (
        main(
            [
                "explain",
                str(inputs / "chest.dcm"),
                "--out",
                str(tmp_path),
                "--bundle",
                str(tiny_bundle),
                "--methods",
                "magic",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "cxrxai: unknown method 'magic'; choose from: gradcam, gradcampp, hirescam, crm, seggradcam, "
        "saliency, smoothgrad, lime, occlusion"
    ]
    assert (
        main(
            [
                "explain",
                str(inputs / "chest.dcm"),
                "--out",
                str(tmp_path),
                "--bundle",
                str(tiny_bundle),
                "--findings",
                "flu",
            ]
        )
        == 2
    )
    assert (
        capsys.readouterr().err.strip().startswith("cxrxai: unknown finding 'flu'; choose from: No Finding")
    )


def test_missing_bundle_is_one_line(inputs, tmp_path, capsys):
    assert main(["explain", str(inputs), "--out", str(tmp_path), "--bundle", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a MONAI bundle" in err[0]


def test_bundle_verify_and_create(tmp_path, capsys):
    assert main(["bundle", "create-untrained", "--out", str(tmp_path / "b"), "--input-size", "32"]) == 0
    digest = capsys.readouterr().out.split()[-1]
    assert main(["bundle", "verify", str(tmp_path / "b"), "--hash", digest]) == 0
    assert main(["bundle", "verify", str(tmp_path / "b"), "--hash", "sha256:" + "1" * 64]) == 2


def test_missing_default_bundle_says_what_to_do(inputs, tmp_path, capsys, monkeypatch):
    import cxrxai.cli

    monkeypatch.setattr(cxrxai.cli, "DEFAULT_BUNDLE", tmp_path / "no-default")
    assert main(["explain", str(inputs / "chest.dcm"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "make model" in err[0] and "--bundle" in err[0]


def test_check_anatomy_will_not_write_its_report_over_a_radiograph(tiny_bundle, tmp_path, capsys):
    """`--json` before the inputs takes the first radiograph as the report path: refused, file untouched."""
    radiograph = tmp_path / "radiograph.dcm"
    shutil.copy(REAL_RADIOGRAPHS / "pa-chest-wg04-rg1.dcm", radiograph)
    before = radiograph.read_bytes()
    report = str(radiograph)  # --json given the radiograph itself
    command = ["bundle", "check-anatomy", "--bundle", str(tiny_bundle), "--json", report, str(radiograph)]
    assert main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ".json" in err[0]
    assert radiograph.read_bytes() == before


def test_check_anatomy_reports_each_radiograph_and_fails_on_implausible_masks(
    tiny_bundle, inputs, tmp_path, capsys
):
    """The untrained tiny bundle's masks are noise: implausible, exit 1; an unreadable input is one line."""
    real = REAL_RADIOGRAPHS / "pa-chest-wg04-rg1.dcm"
    figures, report = tmp_path / "figures", tmp_path / "checks.json"
    argv = ["bundle", "check-anatomy", str(real), str(inputs / "junk.dcm"), "--bundle", str(tiny_bundle)]
    assert main([*argv, "--figures", str(figures), "--json", str(report), "--reframings", "2"]) == 1
    out, err = capsys.readouterr()
    assert f"{real}: IMPLAUSIBLE" in out and "FAIL" in out and "0 of 1 radiographs plausible" in out
    assert "over 2 re-framed copies: " in out and "all of them in 0" in out
    assert err.count("\n") == 2 and "junk.dcm" in err and "1 of 2 inputs could not be read" in err
    entry = json.loads(report.read_text())[str(real)]
    assert not all(check["passed"] for check in entry["checks"].values())
    assert entry["reframings"]["copies"] == 2 and entry["reframings"]["all_passed"] == 0
    assert entry["reframings_before_post_processing"]["copies"] == 2
    before = entry["checks_before_post_processing"]  # the untrained masks: noise either way
    assert before and not all(check["passed"] for check in before.values())
    assert "before post-processing: " in out
    assert main([*argv[:3], "--bundle", str(tiny_bundle), "--reframings", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "cxrxai: --reframings -1: give 0 or more copies"
    assert (figures / "pa-chest-wg04-rg1-anatomy.png").stat().st_size > 10_000


def test_the_node_adds_its_commands_through_an_entry_point(monkeypatch, capsys):
    """The core's parser alone has no node commands and no PACS ingest; the installed entry point adds
    them, so `cxrxai` is composed without the core importing the node."""
    import cxrxai.cli

    installed = cxrxai.cli.entry_points(group=cxrxai.cli.COMMAND_ENTRY_POINTS)
    assert [e.value for e in installed] == ["dicom_node.cli:add_commands"]
    composed = cxrxai.cli.build_parser()
    assert composed.parse_args(["serve"]).command == "serve"
    assert composed.parse_args(["results", "ingest", "--pacs", "A@h:104"]).pacs == "A@h:104"

    monkeypatch.setattr(cxrxai.cli, "entry_points", lambda group: [])
    core = cxrxai.cli.build_parser()
    for argv in (["serve"], ["results", "ingest", "--pacs", "A@h:104"]):
        with pytest.raises(SystemExit):
            core.parse_args(argv)
    capsys.readouterr()
    assert main(["results", "ingest"]) == 2
    assert "give SR files or folders" in capsys.readouterr().err
