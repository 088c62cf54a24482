"""Our results in a real viewer: the OHIF build from npm, served with Orthanc's DICOMweb on one loopback
origin, driven in Debian's headless Chromium by Playwright. Each test opens one of our series as a
radiologist would (double-click in the study browser) and checks what the page shows and its console.

Screenshots are kept in `build/test-artifacts/ohif/` for a person to look at.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread

from cxrxai.cli import main
from cxrxai.dicom.sr import read_sr
from cxrxai.errors import CXRXAIError
from dicom_node.orthanc import DICOMWEB_PLUGIN, Orthanc
from dicom_node.viewer import ViewerServer, ohif_dist

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "resources" / "samples" / "sample-2.dcm"
REAL = ROOT / "resources" / "real" / "pa-chest-wg04-rg1.dcm"
ARTEFACTS = ROOT / "build" / "test-artifacts" / "ohif"
CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--use-gl=angle",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
]
# Console lines OHIF writes on every page, none about our objects
HARMLESS = ("dataSource=",)
LOAD_MS = 8000
PROMPT_MS = 30000  # the longest wait for OHIF's "load this SEG / SR?" prompt
VIEWPORT_LEFT = 340  # screenshot columns left of this are the study browser (thumbnails) at 1600 px wide

sync_api = pytest.importorskip("playwright.sync_api", reason="`make test` installs playwright")


def _ohif_fetched() -> bool:
    try:
        return ohif_dist().is_dir()
    except CXRXAIError:
        return False


pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DICOMWEB_PLUGIN.exists() and _ohif_fetched()),
    reason="needs Debian chromium, orthanc-dicomweb and OHIF (`make test` installs them)",
)


def _large_dx(folder: Path) -> Path:
    """The real CR resampled to a 2500 x 2000 DX with Imager Pixel Spacing and a magnification factor and
    no Pixel Spacing, its own study: larger than the grid the heat-map bands are found on, and spaced by
    the detector's rules (PS3.3 10.7.1.1)."""
    from pydicom.uid import generate_uid
    from scipy import ndimage

    ds = dcmread(REAL)
    stored = ds.pixel_array.astype(np.float32)
    resized = ndimage.zoom(stored, (2500 / stored.shape[0], 2000 / stored.shape[1]), order=1)
    ds.Rows, ds.Columns = resized.shape
    ds.PixelData = np.clip(np.round(resized), 0, 2 ** int(ds.BitsStored) - 1).astype(np.uint16).tobytes()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        setattr(ds, keyword, generate_uid(entropy_srcs=["large-dx", keyword]))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "PixelSpacing" in ds:
        del ds.PixelSpacing
    ds.ImagerPixelSpacing = [0.16, 0.16]
    ds.EstimatedRadiographicMagnificationFactor = 1.1
    path = folder / "large-dx.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Path:
    return _large_dx(tmp_path_factory.mktemp("large-dx"))


@pytest.fixture(scope="module")
def results(large, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """sample-2, the real CR and the large DX explained with the shipped model, by source stem: every
    DICOM object, keyed by Modality and file name (a SEG by its Content Label: ANATOMY, HEATMAPS)."""
    out = tmp_path_factory.mktemp("ohif-results")
    sources = (SAMPLE, REAL, large)
    assert main(["explain", *map(str, sources), "--out", str(out), "--format", "dicom"]) == 0
    found: dict[str, dict[str, Path]] = {}
    for source in sources:
        objects = found.setdefault(source.stem, {})
        for path in (out / source.stem / "dicom").glob("*.dcm"):
            header = dcmread(path, stop_before_pixels=True)
            seg = header.Modality == "SEG"
            objects[str(header.ContentLabel) if seg else f"{header.Modality}:{path.name}"] = path
    return found


@pytest.fixture(scope="module")
def viewer(results, large, tmp_path_factory) -> Iterator[tuple[ViewerServer, dict[str, str]]]:
    """OHIF over an Orthanc holding the sources and their results; the study UID of each source."""
    sources = (SAMPLE, REAL, large)
    with Orthanc(tmp_path_factory.mktemp("orthanc")) as pacs:
        for source in sources:
            for path in (source, *results[source.stem].values()):
                pacs.upload(path)
        server = ViewerServer(ohif_dist(), pacs.http_port).start()
        studies = {s.stem: str(dcmread(s, stop_before_pixels=True).StudyInstanceUID) for s in sources}
        try:
            yield server, studies
        finally:
            server.stop()


@pytest.fixture(scope="module")
def browser(viewer):
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


class Page:
    """One OHIF page on the study, with what its console said."""

    def __init__(self, browser, server: ViewerServer, study: str) -> None:
        self.page = browser.new_page(viewport={"width": 1600, "height": 1000})
        self.messages: list[str] = []
        self.page.on("console", lambda m: self.messages.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.messages.append(f"pageerror: {e}"))
        self.page.goto(server.study_url(study))
        self.page.wait_for_timeout(LOAD_MS)
        for button in ("Skip all", "Confirm and hide"):  # the first-visit tour and the usage notice
            found = self.page.get_by_text(button, exact=True)
            if found.count():
                found.first.click()

    def open(self, series_description: str, asks: bool = True) -> None:
        """Show the series in the viewport. A SEG or SR series (`asks`) makes OHIF ask whether to load it:
        its "Yes" is awaited (a 2500 x 2000 SEG's prompt came after more than 8 s) and clicked."""
        self.page.get_by_text(series_description).first.dblclick()
        if not asks:
            self.page.wait_for_timeout(LOAD_MS)
            return
        yes = self.page.get_by_role("button", name="Yes")  # "load this SEG / SR?"
        with contextlib.suppress(sync_api.TimeoutError):  # no prompt: OHIF shows the series as it is
            yes.first.wait_for(state="visible", timeout=PROMPT_MS)
        if yes.count():
            yes.first.click()
        self.page.wait_for_timeout(LOAD_MS)

    def measurement_titles(self) -> list[str]:
        """The names in OHIF's measurement panel: its tab in the right side panel (which opens it)."""
        self.page.locator('[data-cy="trackedMeasurements-btn"]').first.click()
        self.page.wait_for_timeout(2000)
        return [text.strip() for text in self.page.locator('[data-cy="data-row-title"]').all_inner_texts()]

    def image_to_screen(self) -> tuple[np.ndarray, np.ndarray]:
        """Scale and offset, (x, y) each, from a source pixel (column, row) to a screenshot pixel, asked of
        Cornerstone3D (OHIF's `window.cornerstone`) for the image its viewport shows."""
        corners = self.page.evaluate(
            """() => {
                const cs = window.cornerstone;
                const viewport = cs.getRenderingEngines()[0].getViewports()
                    .find(v => v.getCurrentImageId && v.getCurrentImageId());
                const imageId = viewport.getCurrentImageId();
                const box = viewport.canvas.getBoundingClientRect();
                const at = (column, row) => {
                    const world = cs.utilities.imageToWorldCoords(imageId, [column, row]);
                    const point = viewport.worldToCanvas(world);
                    return [point[0] + box.left, point[1] + box.top];
                };
                return [at(0, 0), at(100, 100)];
            }"""
        )
        origin, far = np.asarray(corners, dtype=float)
        return (far - origin) / 100, origin

    def problems(self) -> list[str]:
        return [
            m
            for m in self.messages
            if (m.startswith("error") or m.startswith("pageerror")) and not any(h in m for h in HARMLESS)
        ]

    def screenshot(self, name: str) -> np.ndarray:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        png = self.page.screenshot()
        (ARTEFACTS / f"{name}.png").write_bytes(png)
        return np.asarray(Image.open(BytesIO(png)).convert("RGB")).astype(int)


def _opened(browser, viewer, source: Path) -> Iterator[Page]:
    server, studies = viewer
    opened = Page(browser, server, studies[source.stem])
    yield opened
    opened.page.close()


@pytest.fixture
def page(browser, viewer) -> Iterator[Page]:
    """OHIF on sample-2's study."""
    yield from _opened(browser, viewer, SAMPLE)


@pytest.fixture
def real_page(browser, viewer) -> Iterator[Page]:
    """OHIF on the real CR's study (no pixel spacing, no Frame of Reference)."""
    yield from _opened(browser, viewer, REAL)


@pytest.fixture
def large_page(browser, viewer, large) -> Iterator[Page]:
    """OHIF on the large DX's study."""
    yield from _opened(browser, viewer, large)


def _count(picture: np.ndarray, rule) -> int:
    r, g, b = picture[..., 0], picture[..., 1], picture[..., 2]
    return int(rule(r, g, b).sum())


def _inside(picture: np.ndarray, rule, mask: np.ndarray, mapping: tuple[np.ndarray, np.ndarray]) -> float:
    """The share of the screenshot pixels over the image that `rule` picks whose source pixel lies in
    `mask`, grown by three screen pixels (at least three source pixels) for the overlay's border and the
    screen's rounding. Pixels off the image are OHIF's own controls."""
    from scipy import ndimage

    r, g, b = picture[..., 0], picture[..., 1], picture[..., 2]
    ys, xs = np.nonzero(rule(r, g, b))
    scale, offset = mapping
    columns = np.floor((xs + 0.5 - offset[0]) / scale[0]).astype(int)
    rows = np.floor((ys + 0.5 - offset[1]) / scale[1]).astype(int)
    on_image = (rows >= 0) & (rows < mask.shape[0]) & (columns >= 0) & (columns < mask.shape[1])
    grown = ndimage.binary_dilation(mask, iterations=max(3, int(np.ceil(3 / min(scale)))))
    inside = grown[rows[on_image], columns[on_image]]
    return float(inside.mean()) if len(inside) else 0.0


def _segments(path: Path) -> dict[str, np.ndarray]:
    """A SEG's frames by segment label: one source-sized mask each (a segment's frames joined)."""
    seg = dcmread(path)
    frames = seg.pixel_array.reshape(-1, int(seg.Rows), int(seg.Columns)).astype(bool)
    labels = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    masks: dict[str, np.ndarray] = {}
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        label = labels[int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)]
        masks[label] = masks.get(label, np.zeros_like(frame)) | frame
    return masks


def test_the_pictures_show_the_summary_then_a_finding_page(page):
    page.open("CXR-XAI overlays", asks=False)
    summary = page.screenshot("summary-page")[:, VIEWPORT_LEFT:]
    page.page.keyboard.press("ArrowDown")  # the next picture of the series: the first finding's page
    page.page.wait_for_timeout(2000)
    finding = page.screenshot("finding-page")[:, VIEWPORT_LEFT:]
    assert page.problems() == []
    orange = _count(summary, lambda r, g, b: (r > 200) & (g > 120) & (g < 200) & (b < 60))  # PRESENT lines
    assert orange > 500
    inferno = _count(finding, lambda r, g, b: (r > 150) & (b < 90) & (r - b > 100))  # the heat map
    assert inferno > 5000, inferno


def test_the_measurement_panel_lists_each_finding_with_its_probability(page, results):
    """Opening the SR loads its measurements into OHIF's tracked measurements (no prompt in OHIF's default
    tracking mode): each outline is drawn on the CR as an editable outline with OHIF's own statistics,
    and the measurement panel names each finding with its probability and decision."""
    page.open("CXR-XAI findings")
    titles = page.measurement_titles()
    picture = page.screenshot("findings-sr")
    (ARTEFACTS / "findings-sr.txt").write_text("\n".join(titles))
    assert page.problems() == []
    (sr,) = [path for key, path in results[SAMPLE.stem].items() if key.startswith("SR:")]
    reported = read_sr(dcmread(sr))
    present = [f for f in reported.findings if reported.present[f.name]]
    assert present, "sample-2 has findings above threshold"
    for finding in present:
        label = f"{finding.name}: present, p={finding.probability:.2f} "
        assert any(title.startswith(label) for title in titles), (label, titles)
    assert reported.ctr is not None
    assert f"Heart, cardiothoracic ratio {reported.ctr:.2f}" in titles
    # the outlines are drawn in the viewport (yellow), not only listed
    assert _count(picture, lambda r, g, b: (r > 200) & (g > 200) & (b < 80)) > 500


def test_the_anatomy_seg_overlays_lungs_and_heart(page, results):
    page.open("CXR-XAI lungs and heart")
    picture = page.screenshot("anatomy-seg")
    assert page.problems() == []
    colours = {
        "Right Lung": lambda r, g, b: (b - r > 60) & (b > 120),  # blue
        "Left Lung": lambda r, g, b: (g - r > 50) & (g > 120) & (g >= b),  # green
        "Heart": lambda r, g, b: (r - g > 50) & (b - g > 30),  # pink
    }
    counts = {name: _count(picture, rule) for name, rule in colours.items()}
    assert min(counts.values()) > 2000, counts
    masks = _segments(results[SAMPLE.stem]["ANATOMY"])
    mapping = page.image_to_screen()
    for name, rule in colours.items():  # each colour where its structure is in the source
        assert _inside(picture, rule, masks[name], mapping) > 0.9, name


def test_the_heat_map_seg_overlays_hot_regions(page, results):
    page.open("CXR-XAI heat maps")
    picture = page.screenshot("heatmap-seg")
    assert page.problems() == []
    hot_colour = lambda r, g, b: (r > 180) & (b < 100) & (r - b > 120)  # noqa: E731
    assert _count(picture, hot_colour) > 1000
    hot = np.logical_or.reduce(list(_segments(results[SAMPLE.stem]["HEATMAPS"]).values()))
    assert _inside(picture, hot_colour, hot, page.image_to_screen()) > 0.9  # over the hot regions only


def test_the_real_radiograph_shows_its_anatomy_and_findings(real_page):
    """A real CR without pixel spacing: the anatomy SEG blacked the whole viewer out (no Pixel Measures)."""
    real_page.open("CXR-XAI lungs and heart")
    anatomy = real_page.screenshot("real-anatomy-seg")[:, VIEWPORT_LEFT:]
    real_page.open("CXR-XAI findings")
    titles = real_page.measurement_titles()
    real_page.screenshot("real-findings-sr")
    assert real_page.problems() == []
    assert _count(anatomy, lambda r, g, b: (b - r > 60) & (b > 120)) > 2000  # right lung
    assert any(": present, p=" in title for title in titles), titles


def test_a_large_dx_shows_its_segs_where_their_pixels_are(large_page, results, large):
    """A 2500 x 2000 DX spaced by Imager Pixel Spacing and magnification: the heat-map SEG, whose bands
    were found on a coarser grid, and the anatomy SEG are drawn over the source pixels they mark."""
    large_page.open("CXR-XAI heat maps")
    heat = large_page.screenshot("large-heatmap-seg")
    mapping = large_page.image_to_screen()
    large_page.open("CXR-XAI lungs and heart")  # drawn over the heat-map SEG, which stays loaded
    anatomy = large_page.screenshot("large-anatomy-seg")
    assert np.allclose(large_page.image_to_screen(), mapping)
    assert large_page.problems() == []
    hot_colour = lambda r, g, b: (r > 180) & (b < 100) & (r - b > 120)  # noqa: E731
    assert _count(heat, hot_colour) > 1000
    objects = results[large.stem]
    hot = np.logical_or.reduce(list(_segments(objects["HEATMAPS"]).values()))
    assert hot.shape == (2500, 2000)
    assert _inside(heat, hot_colour, hot, mapping) > 0.9
    # blue, not the left lung's green outline (which the sample's colour rule also takes: at this scale
    # the outlines are a larger share of the drawn pixels)
    right_lung = lambda r, g, b: (b - r > 60) & (b > 120) & (b - g > 20)  # noqa: E731
    assert _count(anatomy, right_lung) > 2000
    assert _inside(anatomy, right_lung, _segments(objects["ANATOMY"])["Right Lung"], mapping) > 0.9
