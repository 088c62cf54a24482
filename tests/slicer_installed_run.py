"""Runs the module's model run (CXRXAILib/run_model.py) from the files under INSTALLED, as Slicer runs it
from the installed extension, and prints its exit status and which of our modules came from elsewhere
(must be none) as JSON.

Usage: python slicer_installed_run.py INSTALLED RADIOGRAPH BUNDLE OUTPUT_FOLDER
"""

import json
import runpy
import sys
from pathlib import Path

installed = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # slicer_host
from slicer_host import ours_from_elsewhere  # noqa: E402

sys.path.insert(0, installed)
sys.argv = ["run_model.py", *sys.argv[2:]]
try:
    runpy.run_path(f"{installed}/CXRXAILib/run_model.py", run_name="__main__")
    code = 0
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "outside": ours_from_elsewhere(installed)}))
