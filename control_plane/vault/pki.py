"""The agent CA, held by Vault's PKI secrets engine: its key never leaves Vault.

MailFleet sets up the mount, a root CA and two roles: ``agent`` (client certificates whose
common name is the server id) and ``gateway`` (the gRPC listeners' server certificate).
Agents pin the CA by the SHA-256 of its public key (SubjectPublicKeyInfo), as kubeadm does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import hvac.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from control_plane.vault.client import Vault

CA_COMMON_NAME = "MailFleet Agent CA"
AGENT_ROLE = "agent"
GATEWAY_ROLE = "gateway"
AGENT_URI_PREFIX = "spiffe://mailfleet/server/"


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: str
    ca_chain_pem: str
    serial: str
    not_after: datetime
    private_key_pem: str | None = None


def spki_pin(certificate_pem: str | bytes) -> str:
    """``sha256:<hex>`` of the certificate's public key, the form agents are given."""
    data = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
    cert = x509.load_pem_x509_certificate(data)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"sha256:{hashlib.sha256(spki).hexdigest()}"


def normalise_serial(serial: str) -> str:
    """Vault writes serials as ``aa:bb:…``; keep one form (lower-case hex, colons)."""
    return serial.strip().lower().replace("-", ":")


def serial_of(certificate_pem: str | bytes) -> str:
    data = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
    number = x509.load_pem_x509_certificate(data).serial_number
    text = f"{number:x}"
    text = text if len(text) % 2 == 0 else "0" + text
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


class AgentPki:
    def __init__(self, vault: Vault, mount: str = "mailfleet-pki") -> None:
        self.vault = vault
        self.mount = mount
        self._ca_pem: str | None = None

    @property
    def _pki(self) -> Any:
        return self.vault.client.secrets.pki

    async def ensure(self, *, agent_max_ttl_seconds: int, gateway_ttl_seconds: int) -> None:
        """Create the mount, root CA and roles if missing; safe to call on every start."""
        client = self.vault.client

        def ensure_mount() -> None:
            mounts = client.sys.list_mounted_secrets_engines()
            if f"{self.mount}/" not in mounts.get("data", mounts):
                client.sys.enable_secrets_engine(
                    "pki", path=self.mount, config={"max_lease_ttl": "87600h"}
                )

        await self.vault.call(ensure_mount, f"enabling pki mount {self.mount}")
        if not await self._read_ca():
            await self.vault.call(
                lambda: self._pki.generate_root(
                    type="internal",
                    common_name=CA_COMMON_NAME,
                    extra_params={"key_type": "ec", "key_bits": 256, "ttl": "87600h"},
                    mount_point=self.mount,
                ),
                "generating the agent CA",
            )
        agent_role = {
            "allow_any_name": True,
            "enforce_hostnames": False,
            "allow_ip_sans": False,
            "allowed_uri_sans": f"{AGENT_URI_PREFIX}*",
            "server_flag": False,
            "client_flag": True,
            "use_csr_common_name": False,
            "use_csr_sans": False,
            "key_type": "any",
            "max_ttl": f"{agent_max_ttl_seconds}s",
            "no_store": False,
        }
        gateway_role = {
            "allow_any_name": True,
            "enforce_hostnames": False,
            "allow_ip_sans": True,
            "allow_localhost": True,
            "server_flag": True,
            "client_flag": False,
            "key_type": "ec",
            "key_bits": 256,
            "max_ttl": f"{gateway_ttl_seconds}s",
        }
        for name, params in ((AGENT_ROLE, agent_role), (GATEWAY_ROLE, gateway_role)):
            await self.vault.call(
                lambda n=name, p=params: self._pki.create_or_update_role(  # type: ignore[misc]
                    n, extra_params=p, mount_point=self.mount
                ),
                f"configuring pki role {name}",
            )
        self._ca_pem = None

    async def _read_ca(self) -> str:
        def read() -> str:
            try:
                return str(self._pki.read_ca_certificate(mount_point=self.mount))
            except hvac.exceptions.InvalidPath:
                return ""

        return (await self.vault.call(read, "reading the agent CA")).strip()

    async def ca_pem(self) -> str:
        if self._ca_pem is None:
            pem = await self._read_ca()
            if not pem:
                raise RuntimeError("the agent CA is not set up; call ensure() first")
            self._ca_pem = pem + "\n"
        return self._ca_pem

    async def ca_pin(self) -> str:
        return spki_pin(await self.ca_pem())

    async def sign_agent_csr(
        self, csr_pem: str, server_id: str, ttl_seconds: int
    ) -> IssuedCertificate:
        response = await self.vault.call(
            lambda: self._pki.sign_certificate(
                name=AGENT_ROLE,
                csr=csr_pem,
                common_name=server_id,
                extra_params={"ttl": f"{ttl_seconds}s", "uri_sans": AGENT_URI_PREFIX + server_id},
                mount_point=self.mount,
            ),
            f"signing the agent certificate of {server_id}",
        )
        return await self._issued(response["data"])

    async def issue_gateway_certificate(
        self, common_name: str, dns_names: list[str], ip_sans: list[str], ttl_seconds: int
    ) -> IssuedCertificate:
        response = await self.vault.call(
            lambda: self._pki.generate_certificate(
                name=GATEWAY_ROLE,
                common_name=common_name,
                extra_params={
                    "alt_names": ",".join(dns_names),
                    "ip_sans": ",".join(ip_sans),
                    "ttl": f"{ttl_seconds}s",
                },
                mount_point=self.mount,
            ),
            "issuing the gateway certificate",
        )
        return await self._issued(response["data"])

    async def revoke(self, serial: str) -> None:
        await self.vault.call(
            lambda: self._pki.revoke_certificate(serial_number=serial, mount_point=self.mount),
            f"revoking certificate {serial}",
        )

    async def _issued(self, data: dict[str, Any]) -> IssuedCertificate:
        certificate = str(data["certificate"]).strip() + "\n"
        cert = x509.load_pem_x509_certificate(certificate.encode())
        return IssuedCertificate(
            certificate_pem=certificate,
            ca_chain_pem=await self.ca_pem(),
            serial=normalise_serial(str(data["serial_number"])),
            not_after=cert.not_valid_after_utc.astimezone(UTC),
            private_key_pem=data.get("private_key"),
        )
