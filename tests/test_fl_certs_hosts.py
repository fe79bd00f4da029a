"""``hrc-fl fl-certs``: per-host certificates, each naming its own node and host only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from hrc_fl.federated.transport.certs import certificate_hosts, generate_federation, load_node_credentials

HRC_FL = str(Path(sys.executable).parent / "hrc-fl")
PLANT = {"aggregator": "plant-server.example", "ws1": "192.0.2.11", "ws2": "ws2-edge.example"}


def _plant_config(tmp_path: Path) -> Path:
    base = yaml.safe_load((Path(__file__).resolve().parent.parent / "config" / "federated.yaml").read_text())
    base["federation"]["nodes"] = [{"name": n, "rank": r, "host": h, "port": 47100 + r}
                                   for r, (n, h) in enumerate(PLANT.items())]
    # two workstations: a quorum of both, and the robust rule with no attacker to hold out (2f + 1 <= 2)
    base["rounds"]["quorum"] = len(PLANT) - 1
    base["strategy"]["max_attackers"] = 0
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HRC_FL, "fl-certs", *args], capture_output=True, text=True, timeout=120)


def _cert(folder: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((folder / f"{name}.crt").read_bytes())


def test_each_certificate_names_its_own_host_and_no_other(tmp_path):
    # Execute
    result = _cli("--config", str(_plant_config(tmp_path)), "--out", str(tmp_path / "certs"),
                  "--host", "ws1=ws1-edge.example")

    # Assert
    assert result.returncode == 0, result.stderr
    for name, host in PLANT.items():
        cert = _cert(tmp_path / "certs", name)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
        names = certificate_hosts(cert)
        assert name in names and host in names
        own = {host} | ({"ws1-edge.example"} if name == "ws1" else set())
        others = ({*PLANT.values(), "ws1-edge.example"}) - own
        assert not names & others, f"{name}'s certificate names another host: {names & others}"
        assert load_node_credentials(tmp_path / "certs", name).name == name


def test_a_bare_host_for_several_nodes_is_refused(tmp_path):
    result = _cli("--config", str(_plant_config(tmp_path)), "--out", str(tmp_path / "certs"), "--host", "edge.example")
    assert result.returncode == 2
    assert "NODE=HOST" in result.stderr
    assert not (tmp_path / "certs").exists()


def test_a_host_given_for_one_node_on_its_own_host(tmp_path):
    # Execute: on the workstation's edge computer, only its own certificate (same CA folder)
    config = str(_plant_config(tmp_path))
    _cli("--config", config, "--out", str(tmp_path / "certs"))
    result = _cli("--config", config, "--out", str(tmp_path / "certs"), "--nodes", "ws2", "--host", "10.0.0.2",
                  "--if-missing")

    # Assert: ws2 re-issued with the new host (same CA), the others untouched
    assert result.returncode == 0, result.stderr
    assert {"ws2-edge.example", "10.0.0.2"} <= certificate_hosts(_cert(tmp_path / "certs", "ws2"))
    ca = _cert(tmp_path / "certs", "ca")
    assert _cert(tmp_path / "certs", "ws2").issuer == ca.subject
    before = (tmp_path / "certs" / "ws1.crt").read_bytes()
    assert _cli("--config", config, "--out", str(tmp_path / "certs"), "--if-missing").returncode == 0
    assert (tmp_path / "certs" / "ws1.crt").read_bytes() == before


def test_a_kept_certificate_covers_its_hosts_however_they_are_written(tmp_path):
    # Prepare
    generate_federation(tmp_path, ["ws1"], valid_days=1, hosts={"ws1": ["2001:db8::11", "WS1-Edge.example"]})
    before = (tmp_path / "ws1.crt").read_bytes()

    # Execute: the same hosts, written differently (IPv6 spelled out and upper case, DNS in other case)
    generate_federation(tmp_path, ["ws1"], valid_days=1, keep_existing=True,
                        hosts={"ws1": ["2001:DB8:0:0::11", "ws1-edge.EXAMPLE"]})
    same = (tmp_path / "ws1.crt").read_bytes()
    generate_federation(tmp_path, ["ws1"], valid_days=1, keep_existing=True, hosts={"ws1": ["10.0.0.9"]})

    # Assert: kept for the same hosts, re-issued for a host it does not name
    assert same == before
    assert "10.0.0.9" in certificate_hosts(_cert(tmp_path, "ws1"))
