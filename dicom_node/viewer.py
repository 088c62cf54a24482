"""The OHIF web viewer on loopback, in front of a local Orthanc's DICOMweb: how a person (and the viewer
tests) sees our results as a radiologist would.

OHIF's built viewer is the `dist/` folder of the npm package `@ohif/app`, fetched once by `make ohif`
(`npm pack`) into a cache outside git. It is served here with its configuration written for Orthanc,
and `/dicom-web` and `/wado` are forwarded to Orthanc on the same origin: Orthanc sends no CORS headers,
so the viewer and the archive must share one origin. The Python standard library's threading HTTP server
is enough for one person or one headless browser; a department deploys OHIF behind its own web server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import mimetypes
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from cxrxai.errors import CXRXAIError
from dicom_node.orthanc import Orthanc

OHIF_VERSION = "3.13.2"
OHIF_CACHE = Path(os.environ.get("CXRXAI_CACHE", Path.home() / ".cache" / "cxrxai")) / f"ohif-{OHIF_VERSION}"
PROXIED = ("/dicom-web", "/wado")
# Headers that belong to one hop (RFC 9110 7.6.1), not forwarded
HOP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")


def ohif_dist(cache: Path = OHIF_CACHE) -> Path:
    """The built OHIF viewer, or a one-line error saying how to fetch it."""
    dist = cache / "package" / "dist"
    if not (dist / "index.html").is_file():
        raise CXRXAIError(f"OHIF {OHIF_VERSION} is not in {cache}: run `make ohif` (npm pack @ohif/app)")
    return dist


def app_config() -> str:
    """OHIF's `window.config`: one DICOMweb data source, this origin's Orthanc, WADO-RS rendering.
    `extensions` and `modes` stay empty: the build registers its own modes and loads the SEG and SR
    extensions when a series needs them."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "dicomweb",
        "configuration": {
            "friendlyName": "CXR-XAI Orthanc",
            "name": "orthanc",
            "wadoUriRoot": "/wado",
            "qidoRoot": "/dicom-web",
            "wadoRoot": "/dicom-web",
            "qidoSupportsIncludeField": False,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": False,
            "supportsWildcard": True,
            "omitQuotationForMultipartRequest": True,
        },
    }
    config = {
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "showStudyList": True,
        "maxNumberOfWebWorkers": 2,
        "showLoadingIndicator": True,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "strictZSpacingForVolumeViewport": True,
        "defaultDataSourceName": "dicomweb",
        "dataSources": [source],
    }
    return f"window.config = {json.dumps(config, indent=2)};\n"


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        """Quiet: a viewer asks for hundreds of files."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.startswith(PROXIED):
            self._forward()
        else:
            self._static()

    def do_POST(self) -> None:  # noqa: N802
        self._forward() if self.path.startswith(PROXIED) else self.send_error(405)

    def _static(self) -> None:
        path = urlsplit(self.path).path
        if path == "/app-config.js":
            self._send(200, app_config().encode(), "text/javascript")
            return
        root = self.server.dist
        target = (root / path.lstrip("/")).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            target = root / "index.html"  # a single-page app: its router owns every other path
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send(200, target.read_bytes(), kind)

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        connection = http.client.HTTPConnection("127.0.0.1", self.server.archive_port, timeout=120)
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            payload = answer.read()
        except OSError as exc:
            self._send(502, f"Orthanc did not answer: {exc}".encode(), "text/plain")
            return
        finally:
            connection.close()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in HOP_HEADERS and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class ViewerServer(ThreadingHTTPServer):
    """OHIF's files plus Orthanc's DICOMweb on one loopback origin."""

    daemon_threads = True

    def __init__(self, dist: Path, archive_port: int, port: int = 0) -> None:
        self.dist = dist.resolve()
        self.archive_port = archive_port
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def study_url(self, study_instance_uid: str) -> str:
        return f"{self.url}/viewer?StudyInstanceUIDs={study_instance_uid}"

    def start(self) -> ViewerServer:
        threading.Thread(target=self.serve_forever, name="ohif-viewer", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def study_links(pacs: Orthanc, server: ViewerServer) -> list[str]:
    """One line per study in the archive: patient, date, description, the OHIF address."""
    lines = []
    for identifier in pacs.rest("/studies"):
        study = pacs.rest(f"/studies/{identifier}")
        tags = {**study.get("PatientMainDicomTags", {}), **study.get("MainDicomTags", {})}
        label = " ".join(
            str(tags[key]) for key in ("PatientName", "StudyDate", "StudyDescription") if tags.get(key)
        )
        lines.append(f"{label or identifier}: {server.study_url(tags['StudyInstanceUID'])}")
    return sorted(lines)


def main(argv: list[str] | None = None) -> int:
    """`make viewer`: Orthanc over the demo's archive and OHIF in front of it, until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m dicom_node.viewer", description=main.__doc__)
    parser.add_argument("--archive", type=Path, default=Path("demo-out") / "pacs", help="Orthanc's folder")
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    args = parser.parse_args(argv)
    try:
        if not (args.archive / "index").is_dir():
            raise CXRXAIError(f"no Orthanc archive in {args.archive}: run `make demo` first")
        dist = ohif_dist()
        with Orthanc(args.archive, "DEMOPACS") as pacs:
            server = ViewerServer(dist, pacs.http_port, args.port).start()
            print(f"OHIF {OHIF_VERSION} at {server.url} over Orthanc ({pacs.url}); Ctrl-C stops both.")
            for line in study_links(pacs, server) or ["(the archive holds no study)"]:
                print(f"  {line}")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
            finally:
                server.stop()
    except CXRXAIError as exc:
        print(f"viewer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
