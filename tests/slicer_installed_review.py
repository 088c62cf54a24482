"""Reviews one study the way the installed extension does, from the files under INSTALLED only, in an
interpreter that can import nothing but the standard library and the packages named (Slicer's own).
Prints what it drew as JSON, and which of our modules came from elsewhere (must be none).

Usage: python slicer_installed_review.py INSTALLED PACKAGE,PACKAGE,... RESULTS_FOLDER RADIOGRAPH [SLICER_SITE]
SLICER_SITE: a folder of packages at the versions Slicer ships, ahead of this interpreter's own.
"""

import importlib.abc
import json
import sys
from pathlib import Path

installed, allowed, folder, radiograph = sys.argv[1], set(sys.argv[2].split(",")), sys.argv[3], sys.argv[4]
if len(sys.argv) > 5:
    sys.path.insert(0, sys.argv[5])
OURS = ("cxrxai", "CXRXAILib")  # slicer_host.OURS, before that can be imported
HOST = "slicer_host"  # the application's part, played by the tests


class OnlyThesePackages(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in allowed or top in (*OURS, HOST) or top.startswith("_"):
            return None
        raise ImportError(f"{name} is not in Slicer's Python")


sys.meta_path.insert(0, OnlyThesePackages())
sys.path.insert(0, installed)
sys.path.insert(0, str(Path(__file__).resolve().parent))  # slicer_host: the application's scene set-up

from CXRXAILib import matching, review  # noqa: E402
from slicer_host import ours_from_elsewhere, prepared_scene  # noqa: E402

scene, _ = prepared_scene()
(found,) = matching.result_sets(matching.read_headers([folder, radiograph]))
results = matching.load(found)
logic = review.ReviewLogic(scene)
volume = logic.radiograph_volume(radiograph)
finding = results.mapped_findings()[0]
layer = results.default_layer(finding, "gradcam")
logic.show_heatmap(results, results.heatmap(finding, "gradcam", layer), volume)
import highdicom  # noqa: E402

print(
    json.dumps(
        {
            "highdicom": highdicom.__version__,
            "segments": logic.show_anatomy(results, volume).GetSegmentation().GetNumberOfSegments(),
            "lines": len(logic.show_ctr(results, volume)),
            "curves": len(logic.show_outlines(results, results.outlines, volume)),
            "outside": ours_from_elsewhere(installed),
        }
    )
)
