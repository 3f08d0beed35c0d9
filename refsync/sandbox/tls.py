"""TLS material for the sandbox: a throwaway CA and a server certificate for the loopback host.

simple-salesforce always builds ``https://`` URLs, so the Salesforce emulator serves TLS. Clients
trust the sandbox by pointing ``requests`` at the CA bundle written here (``verify=<path>``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["TLSMaterial", "make_tls_material"]


@dataclass(frozen=True)
class TLSMaterial:
    """Files of one sandbox TLS setup.

    Attributes:
        ca_bundle: PEM of the sandbox CA; give it to clients as their trust store.
        certfile: server certificate chain (PEM) for ``127.0.0.1`` and ``localhost``.
        keyfile: the server certificate's private key (PEM).
    """

    ca_bundle: Path
    certfile: Path
    keyfile: Path

    @classmethod
    def in_directory(cls, directory: Path | str) -> TLSMaterial:
        """The paths :func:`make_tls_material` writes in ``directory`` (nothing is written)."""
        target = Path(directory)
        return cls(ca_bundle=target / "sandbox-ca.pem", certfile=target / "sandbox-server.pem",
                   keyfile=target / "sandbox-server.key")


def make_tls_material(directory: Path | str | None = None) -> TLSMaterial:
    """Create a CA and a server certificate for ``127.0.0.1`` and ``localhost``.

    Args:
        directory: where to write the PEM files; a new temporary directory when omitted.

    Returns:
        The paths of the CA bundle, the certificate chain and the key.
    """
    if directory is None:
        directory = tempfile.mkdtemp(prefix="refsync-sandbox-")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="refsync sandbox")
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    material = TLSMaterial.in_directory(target)
    ca.cert_pem.write_to_path(str(material.ca_bundle))
    server_cert.private_key_pem.write_to_path(str(material.keyfile))
    material.certfile.write_bytes(b"".join(blob.bytes() for blob in server_cert.cert_chain_pems))
    material.keyfile.chmod(0o600)
    return material
