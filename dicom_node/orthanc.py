"""A local Orthanc PACS with DICOMweb: the demo's PACS, the viewer's archive, and the tests' peer.

Orthanc as Debian ships it (packages `orthanc` and `orthanc-dicomweb`), started on loopback ports chosen at
run time with its own storage folder, so a person can browse the demo's results and a test can talk to a
real PACS. Orthanc's storage survives a restart: `make viewer` serves what `make demo` stored.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cxrxai.errors import CXRXAIError
from dicom_node.ports import free_port, listening

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
START_SECONDS = 30


def orthanc_executable() -> str:
    """Debian installs Orthanc in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if found is None:
        raise CXRXAIError(
            "Orthanc is not installed: run `make debs` (Debian packages orthanc, orthanc-dicomweb)"
        )
    return found


@dataclass
class Orthanc:
    """One Orthanc process on loopback. `modalities`: name -> (AE title, host, port) it may send to."""

    root: Path
    ae_title: str = "ORTHANC"
    modalities: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    dicomweb: bool = True
    http_port: int = 0
    dicom_port: int = 0
    _process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def configuration(self) -> dict:
        plugins = []
        if self.dicomweb:
            if not DICOMWEB_PLUGIN.exists():
                raise CXRXAIError(
                    f"Orthanc's DICOMweb plugin is missing ({DICOMWEB_PLUGIN}): run `make debs` "
                    "(Debian package orthanc-dicomweb)"
                )
            plugins.append(str(DICOMWEB_PLUGIN))
        return {
            "Name": "cxrxai",
            "StorageDirectory": str(self.root / "storage"),
            "IndexDirectory": str(self.root / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "HttpBindAddress": "127.0.0.1",
            "DicomBindAddress": "127.0.0.1",
            "DicomAet": self.ae_title,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomModalities": {name: list(entry) for name, entry in self.modalities.items()},
            "Plugins": plugins,
            "StableAge": 1,
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
            },
        }

    def start(self) -> Orthanc:
        self.root.mkdir(parents=True, exist_ok=True)
        self.http_port = self.http_port or free_port()
        self.dicom_port = self.dicom_port or free_port()
        config = self.root / "orthanc.json"
        config.write_text(json.dumps(self.configuration(), indent=2))
        log = open(self.root / "orthanc.log", "ab")  # noqa: SIM115 (kept open for the process's life)
        self._process = subprocess.Popen([orthanc_executable(), str(config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + START_SECONDS
        while not (listening(self.http_port) and listening(self.dicom_port)):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise CXRXAIError(f"Orthanc did not start; its log: {self.root / 'orthanc.log'}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def rest(self, path: str, data: bytes | None = None, method: str | None = None):
        """One call of Orthanc's REST API; JSON answers parsed."""
        body = self.rest_bytes(path, data, method)
        return json.loads(body) if body else None

    def rest_bytes(self, path: str, data: bytes | None = None, method: str | None = None) -> bytes:
        """One call of Orthanc's REST API, the answer as it came (a DICOM file, say)."""
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.read()

    def upload(self, path: Path) -> dict:
        """Store one Part 10 file, as a modality's C-STORE would."""
        try:
            return self.rest("/instances", data=Path(path).read_bytes(), method="POST")
        except urllib.error.HTTPError as exc:
            raise CXRXAIError(f"Orthanc refused {path}: HTTP {exc.code} {exc.read()[:200]!r}") from exc
