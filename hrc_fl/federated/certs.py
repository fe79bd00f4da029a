"""Per-workstation TLS certificates for the federated channel (a private CA + one certificate per node).

Every node of the federation (the aggregator and each workstation) gets one key and one certificate
signed by the plant's CA. The certificate's common name and DNS SAN are the node's name (e.g.
``aggregator``, ``ws1``); it is valid for both server and client authentication because in FedML's gRPC
topology every rank also listens. Peers verify each other by that name (mutual TLS), so a process without
a certificate from this CA, or with another node's certificate, is refused.

Files in the output folder: ``ca.crt``, ``ca.key`` (keep offline in a real plant), ``<name>.crt``,
``<name>.key``. Keys are written with mode 0600, atomically.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hrc_fl.data.atomic_io import atomic_write_bytes

#: Host names every node certificate also carries, so loopback deployments and tests verify.
LOOPBACK_NAMES: tuple[str, ...] = ("localhost",)
LOOPBACK_IPS: tuple[str, ...] = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class NodeCredentials:
    """PEM bytes a node needs for mutual TLS: its key and certificate, and the CA to trust."""

    name: str
    private_key_pem: bytes
    certificate_pem: bytes
    ca_certificate_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _check_name(name: str) -> None:
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"node name must be letters, digits, '_' or '-': {name!r}")


def make_ca(common_name: str, valid_days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA key and certificate (ECDSA P-256)."""
    if valid_days < 1:
        raise ValueError(f"valid_days must be >= 1, got {valid_days}")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_node_certificate(name: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                          valid_days: int, extra_hosts: Sequence[str] = ()
                          ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Key + certificate for one node: CN and DNS SAN = ``name`` (plus loopback and ``extra_hosts``)."""
    _check_name(name)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    for host in (*LOOPBACK_NAMES, *extra_hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    sans.extend(x509.IPAddress(ipaddress.ip_address(ip)) for ip in LOOPBACK_IPS)
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=valid_days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def generate_federation(out_dir: Path, node_names: Sequence[str], *, valid_days: int,
                        ca_name: str = "hrc_fl federation CA", extra_hosts: Sequence[str] = (),
                        overwrite_ca: bool = False, keep_existing: bool = False) -> list[Path]:
    """Write a CA (kept if present unless ``overwrite_ca``) and one key/cert per node; return the files.

    ``keep_existing``: leave a node's key/cert alone when both exist and the CA was kept (setup uses
    this so that a second run changes nothing)."""
    if len(set(node_names)) != len(node_names):
        raise ValueError(f"node names must be unique: {list(node_names)}")
    out_dir = Path(out_dir)
    ca_key_path, ca_cert_path = out_dir / "ca.key", out_dir / "ca.crt"
    ca_kept = ca_key_path.is_file() and ca_cert_path.is_file() and not overwrite_ca
    if ca_kept:
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    else:
        ca_key, ca_cert = make_ca(ca_name, valid_days)
        atomic_write_bytes(ca_key_path, _key_pem(ca_key), mode=0o600)
        atomic_write_bytes(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    written = [ca_cert_path, ca_key_path]
    for name in node_names:
        if keep_existing and ca_kept and (out_dir / f"{name}.key").is_file() and (out_dir / f"{name}.crt").is_file():
            continue
        key, cert = make_node_certificate(name, ca_key, ca_cert, valid_days, extra_hosts)
        atomic_write_bytes(out_dir / f"{name}.key", _key_pem(key), mode=0o600)
        atomic_write_bytes(out_dir / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        written += [out_dir / f"{name}.crt", out_dir / f"{name}.key"]
    return written


def load_node_credentials(cert_dir: Path, name: str) -> NodeCredentials:
    """Read ``<name>.key``, ``<name>.crt`` and ``ca.crt``; FileNotFoundError names the setup command."""
    cert_dir = Path(cert_dir)
    paths = [cert_dir / f"{name}.key", cert_dir / f"{name}.crt", cert_dir / "ca.crt"]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"TLS file missing: {path} (generate with: hrc-fl fl-certs --out {cert_dir})")
    cert = x509.load_pem_x509_certificate(paths[1].read_bytes())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cn or cn[0].value != name:
        raise ValueError(f"{paths[1]} is not the certificate of {name!r}")
    return NodeCredentials(name, paths[0].read_bytes(), paths[1].read_bytes(), paths[2].read_bytes())
