"""The readers, results and geometry import without torch or MONAI (3D Slicer does not have them)."""

from __future__ import annotations

import subprocess
import sys

BLOCK_HEAVY = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'monai', 'captum', 'torchvision'}:
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
"""


def test_core_imports_without_torch():
    code = BLOCK_HEAVY + (
        "import cxrxai, cxrxai.io, cxrxai.explanation, cxrxai.geometry, cxrxai.labels\n"
        "import cxrxai.cardiothoracic\n"
        "import cxrxai.plausibility, cxrxai.render\n"
        "import cxrxai.samples\n"
        "import cxrxai.dicom.sr, cxrxai.dicom.seg, cxrxai.dicom.sc, cxrxai.dicom.result_objects\n"
        "import cxrxai.explain\n"
        "from cxrxai.io import read_radiograph\n"
        "print('ok')\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"


def test_block_actually_blocks_torch():
    completed = subprocess.run(
        [sys.executable, "-c", BLOCK_HEAVY + "import torch"], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode != 0 and "blocked for this test" in completed.stderr
