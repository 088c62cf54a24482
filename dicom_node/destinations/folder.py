"""Folders: copy every result object into a folder (fsync'ed, so a copy is whole or absent after a
crash), re-encoded first when the destination names a transfer syntax."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from dicom_node.destinations import Carries, Destination, DestinationKind, Kind, Outcome, Sending, register
from dicom_node.destinations.dicom import read_result
from dicom_node.spool import durable_write

if TYPE_CHECKING:
    from dicom_node.state import Delivery


@register
class Folder(DestinationKind):
    name = Kind.FOLDER
    carries = Carries.OBJECTS

    def check(self, destination: Destination) -> list[str]:
        if destination.folder is None:
            return ["folder: required for a folder destination (where result objects are copied)"]
        return []

    def deliver(
        self, destination: Destination, deliveries: list[Delivery], sending: Sending, outcome: Outcome
    ) -> None:
        assert destination.folder is not None  # check() made sure
        for delivery in deliveries:
            try:
                _copy(Path(delivery.path or ""), destination.folder, destination.transfer_syntax)
            except OSError as exc:
                outcome.failed(delivery, str(exc))
            except Exception as exc:  # this object cannot be re-encoded: record it, copy the others
                outcome.failed(
                    delivery, f"not re-encoded for {destination.name}: {type(exc).__name__}: {exc}"
                )
            else:
                outcome.sent(delivery)


def _copy(path: Path, folder: Path, syntax: str) -> None:
    if not syntax:
        durable_write(folder / path.name, path.read_bytes())
        return
    buffer = BytesIO()
    read_result(path, syntax).save_as(buffer, enforce_file_format=True)
    durable_write(folder / path.name, buffer.getvalue())
