"""'Run locally': explain the selected radiograph on this computer, e.g. to try another bundle.

The model runs in a process of its own (`run_model.py` under Slicer's `PythonSlicer`), as
SlicerMONAIAuto3DSeg runs its inference: Slicer stays responsive, the module shows the run's progress lines
and the user can cancel, which ends the process and everything it started. Nothing here imports torch:
the module loads in a Slicer without PyTorch, and the widget asks before installing anything
(`missing_packages`).
"""

from __future__ import annotations

import importlib.util
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from CXRXAILib.catalogue import RadiographResults, from_explanation
from CXRXAILib.run_model import PROGRESS

RUNNER = Path(__file__).with_name("run_model.py")
# what the model run imports beyond Slicer's own Python: module name -> what the user is asked to install
NEEDED = {"torch": "PyTorch", "monai": "MONAI", "captum": "Captum", "threadpoolctl": "threadpoolctl"}
BUNDLE_FOLDER = "CXRXAIBundle"  # the default bundle's folder among the module's resources


def missing_packages() -> list[str]:
    """Display names of what a local run still needs."""
    return [name for module, name in NEEDED.items() if importlib.util.find_spec(module) is None]


def default_bundle(resources: str | Path | None = None) -> Path | None:
    """The default bundle the extension installs among the module's resources, else the one of a source
    checkout of cxrxai; None when neither is there."""
    from cxrxai.model.layout import DEFAULT_BUNDLE, is_bundle

    candidates = [Path(resources) / BUNDLE_FOLDER] if resources else []
    return next((c for c in [*candidates, DEFAULT_BUNDLE] if is_bundle(c)), None)


class LocalRun:
    """One model run in its own process. Call `poll` from a timer: it takes the new progress lines and
    says whether the process still runs; `cancel` ends it; `results` reads what it wrote."""

    def __init__(self, python: str, radiograph: str | Path, bundle: str | Path, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.percent = 0
        self.stage = "starting"
        self.cancelled = False
        self.last_line = ""
        group = (
            {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
            if sys.platform == "win32"
            else {"start_new_session": True}  # a process group of its own: cancel ends all of it
        )
        self._process = subprocess.Popen(
            [python, str(RUNNER), str(radiograph), str(bundle), str(self.folder)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **group,
        )  # fmt: skip
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line.rstrip("\n"))

    def poll(self) -> bool:
        """Take the run's new output; True while it runs."""
        running = self._process.poll() is None
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line.startswith(PROGRESS + " "):
                percent, _, stage = line[len(PROGRESS) + 1 :].partition(" ")
                self.percent, self.stage = int(percent), stage
            elif line.strip():
                self.last_line = line.strip()
        return running

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the run to end (tests, scripts); its exit status."""
        code = self._process.wait(timeout)
        self.poll()
        return code

    @property
    def succeeded(self) -> bool:
        return self._process.poll() == 0 and not self.cancelled

    @property
    def failure(self) -> str:
        """Why the run did not succeed, in one line ("" while it runs or when it succeeded)."""
        code = self._process.poll()
        if code in (None, 0):
            return ""
        if self.cancelled:
            return "cancelled"
        return self.last_line or f"the model run ended with status {code}"

    def cancel(self) -> None:
        """End the run and every process it started."""
        if self._process.poll() is not None:
            return
        self.cancelled = True
        if sys.platform == "win32":
            self._process.send_signal(signal.CTRL_BREAK_EVENT)
        else:
            os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def results(self) -> RadiographResults:
        """What the finished run wrote, as the module shows DICOM results."""
        from cxrxai.explanation import load_explanation

        if not self.succeeded:
            raise RuntimeError(f"the local run did not finish: {self.failure or 'still running'}")
        return from_explanation(load_explanation(self.folder))
