"""S3-compatible object storage between the node and remote workers, for sites without a shared folder.

The node puts each spooled instance under `<prefix>/spool/<relative path>` before it dispatches the job;
a worker gets it into its own local spool, explains it, and puts every result file under
`<prefix>/results/<relative path>`; the node gets them into its results folder before it queues the
deliveries. Relative paths are the ones the tasks already carry, so the folder and S3 modes differ only
in these copies. Keys are deterministic, so a job run twice overwrites the same objects. boto3 reads the
credentials from the usual AWS environment variables or files.
"""

from __future__ import annotations

import os
from pathlib import Path

from dicom_node.config import NodeConfig


class ObjectStore:
    def __init__(self, config: NodeConfig) -> None:
        import boto3

        storage = config.storage
        self.bucket = storage.s3_bucket
        self.prefix = storage.s3_prefix.strip("/")
        self.client = boto3.client(
            "s3", endpoint_url=storage.s3_endpoint_url or None, region_name=storage.s3_region or None
        )

    def key(self, area: str, relative: str) -> str:
        return "/".join(part for part in (self.prefix, area, relative) if part)

    def put(self, area: str, relative: str, local: Path) -> None:
        self.client.upload_file(str(local), self.bucket, self.key(area, relative))

    def get(self, area: str, relative: str, local: Path) -> None:
        """Download to a temporary name, then rename: a crash never leaves half a file under the name."""
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(f".{local.name}.{os.getpid()}.partial")
        self.client.download_file(self.bucket, self.key(area, relative), str(partial))
        os.replace(partial, local)


def object_store(config: NodeConfig) -> ObjectStore | None:
    """The object store when [storage] kind = "s3"; None for shared folders."""
    return ObjectStore(config) if config.storage.kind == "s3" else None
