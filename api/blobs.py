"""The per-tenant, content-addressed artifact store.

An uploaded artifact is stored once, by the SHA-256 of its bytes, under the tenant's
artifact directory: ``{artifacts}/{tenant}/blobs/sha256/{digest}``. A job names its
inputs by digest and re-checks the digest when it reads them. Staging directories for
uploads in flight live beside it, in ``{artifacts}/{tenant}/uploads/``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from privaudit.errors import DataError

__all__ = ["BlobStore"]


@dataclass(frozen=True)
class BlobStore:
    """Content-addressed artifacts of one tenant: ``{root}/blobs/sha256/{digest}``."""

    root: Path

    @classmethod
    def for_tenant(cls, artifacts_dir: Path, tenant_id: str) -> BlobStore:
        return cls(artifacts_dir / tenant_id)

    def path(self, sha256: str) -> Path:
        """Where the blob ``sha256`` lives (whether or not it exists)."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise DataError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / "blobs" / "sha256" / sha256

    def staging(self) -> Path:
        """A fresh staging directory for one request (remove it when done)."""
        return self.root / "uploads" / f".staging-{uuid.uuid4().hex}"

    def put(self, source: Path, sha256: str) -> Path:
        """Move ``source`` (already hashed to ``sha256``) into the store."""
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            source.unlink(missing_ok=True)
        else:
            os.replace(source, target)
        return target

    def verified(self, sha256: str) -> Path:
        """The blob's path, after checking that its bytes still hash to ``sha256``."""
        path = self.path(sha256)
        digest = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except FileNotFoundError:
            raise DataError(f"artifact {sha256} is missing from the store") from None
        if digest.hexdigest() != sha256:
            raise DataError(f"artifact {sha256} is damaged in the store (checksum differs)")
        return path

    @staticmethod
    def discard(staging: Path) -> None:
        """Remove a staging directory and everything in it."""
        shutil.rmtree(staging, ignore_errors=True)
