"""Per-workstation TLS certificates for the federated channel (a private CA + one certificate per node).

Every node of the federation (the aggregator and each workstation) gets one key and one certificate
signed by the plant's CA. The certificate's common name and first DNS SAN are the node's name (e.g.
``aggregator``, ``ws1``); its other SANs are the host that node runs on (its configured ``host``, e.g.
``ws1-edge.plant.example`` or ``192.0.2.11``, plus any given for it alone) and loopback. So each
certificate names one host: a certificate copied to another machine does not match that machine's
name. It is valid for both server and client authentication because in FedML's gRPC topology every rank
also listens. Peers verify each other by node name (mutual TLS), so a process without a certificate from
this CA, or with another node's certificate, is refused.

Files in the output folder: ``ca.crt``, ``ca.key`` (keep offline in a real plant), ``<name>.crt``,
``<name>.key``. Keys are written with mode 0600, atomically.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping, Sequence
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


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def certificate_hosts(cert: x509.Certificate) -> set[str]:
    """Every DNS name and IP address in a certificate's SAN, as text."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))}


def make_node_certificate(name: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                          valid_days: int, hosts: Sequence[str] = ()
                          ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Key + certificate for one node: CN and DNS SAN = ``name``, plus the node's own ``hosts`` (DNS
    names or IP addresses of the machine it runs on) and loopback."""
    _check_name(name)
    key = ec.generate_private_key(ec.SECP256R1())
    names = [name]
    for host in (*hosts, *LOOPBACK_NAMES, *LOOPBACK_IPS):
        if host and host not in names:
            names.append(host)
    sans = [_general_name(host) for host in names]
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
                        ca_name: str = "hrc_fl federation CA", hosts: Mapping[str, Sequence[str]] | None = None,
                        overwrite_ca: bool = False, keep_existing: bool = False) -> list[Path]:
    """Write a CA (kept if present unless ``overwrite_ca``) and one key/cert per node; return the files.

    ``hosts``: per node name, the host names / addresses its certificate carries (that node's only).
    ``keep_existing``: leave a node's key/cert alone when both exist, the CA was kept and the certificate
    already names the node's hosts (setup uses this so that a second run changes nothing, while a host
    that changed in the configuration gets a new certificate)."""
    hosts = hosts or {}
    unknown = sorted(set(hosts) - set(node_names))
    if unknown:
        raise ValueError(f"hosts given for nodes not generated: {unknown}")
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
        wanted = list(hosts.get(name, ()))
        if keep_existing and ca_kept and _covers(out_dir, name, wanted):
            continue
        key, cert = make_node_certificate(name, ca_key, ca_cert, valid_days, wanted)
        atomic_write_bytes(out_dir / f"{name}.key", _key_pem(key), mode=0o600)
        atomic_write_bytes(out_dir / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        written += [out_dir / f"{name}.crt", out_dir / f"{name}.key"]
    return written


def _covers(out_dir: Path, name: str, hosts: Sequence[str]) -> bool:
    """True when ``name``'s key and certificate exist and the certificate names every one of ``hosts``
    (compared as SAN entries, not as text: see :func:`_host_key`)."""
    key, crt = out_dir / f"{name}.key", out_dir / f"{name}.crt"
    if not (key.is_file() and crt.is_file()):
        return False
    named = certificate_hosts(x509.load_pem_x509_certificate(crt.read_bytes()))
    return {_host_key(h) for h in hosts} <= {_host_key(h) for h in named}


def _host_key(host: str) -> x509.GeneralName:
    """``host`` as TLS matches it: an IP address by value (``2001:DB8:0::1`` is ``2001:db8::1``), a DNS
    name without regard to case."""
    general = _general_name(host)
    return x509.DNSName(general.value.lower()) if isinstance(general, x509.DNSName) else general


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
