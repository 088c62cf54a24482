"""Webhooks: POST the triage notification (JSON: UIDs, findings, the model; no names, IDs or dates) to
an http(s) URL. Any answer outside 2xx fails the delivery, which is retried like any other."""

from __future__ import annotations

import http.client
import urllib.request
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from dicom_node.destinations import Carries, Destination, DestinationKind, Kind, Outcome, Sending, register

if TYPE_CHECKING:
    from dicom_node.state import Delivery

TIMEOUT_SECONDS = 10


@register
class Webhook(DestinationKind):
    name = Kind.WEBHOOK
    carries = Carries.NOTIFICATION

    def check(self, destination: Destination) -> list[str]:
        if not destination.url:
            return ["url: required for a webhook destination, e.g. https://alerts.example.org/cxrxai"]
        parts = urlsplit(destination.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return [f"url: {destination.url!r} is not an http:// or https:// URL"]
        return []

    def deliver(
        self, destination: Destination, deliveries: list[Delivery], sending: Sending, outcome: Outcome
    ) -> None:
        for delivery in deliveries:
            try:
                _post(destination.url, delivery.payload or "{}")
            except (OSError, ValueError, http.client.HTTPException) as exc:
                outcome.failed(delivery, f"{destination.name}: {exc}")
            else:
                outcome.sent(delivery)


def _post(url: str, payload: str) -> None:
    request = urllib.request.Request(
        url, data=payload.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        if not 200 <= response.status < 300:
            raise OSError(f"webhook answered HTTP {response.status}")
