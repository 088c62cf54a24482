"""Runs the module's model run (CXRXAILib/run_model.py) from the files under INSTALLED, as Slicer runs it
from the installed extension, and prints its exit status and which of our modules came from elsewhere
(must be none) as JSON.

Usage: python slicer_installed_run.py INSTALLED RADIOGRAPH BUNDLE OUTPUT_FOLDER
"""

import json
import runpy
import sys

installed = sys.argv[1]
sys.path.insert(0, installed)
sys.argv = ["run_model.py", *sys.argv[2:]]
try:
    runpy.run_path(f"{installed}/CXRXAILib/run_model.py", run_name="__main__")
    code = 0
except SystemExit as exit:
    code = exit.code
outside = sorted(
    module.__name__
    for module in list(sys.modules.values())
    if module.__name__.split(".")[0] in ("cxrxai", "CXRXAILib")
    and not (getattr(module, "__file__", "") or "").startswith(installed)
)
print(json.dumps({"code": code, "outside": outside}))
