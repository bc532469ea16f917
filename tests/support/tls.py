"""A TLS-enabled PostgreSQL for the tests: a CA and server certificates made here, a
throwaway cluster (``initdb`` + ``pg_ctl`` from Debian's packages) with ``ssl = on``.

- ``make_ca(directory, name)`` writes a CA's certificate and key.
- ``issue(ca, directory, hosts)`` writes a server certificate signed by ``ca`` for ``hosts``
  (DNS names or IP addresses).
- ``postgres_cluster(...)`` runs a cluster with that certificate (or without TLS) and yields
  its admin URL; ``hostssl`` lines in ``pg_hba.conf`` make TLS the only way in when it is on.

The integration tests (``tests/integration/test_tls.py``) and the e2e tests (pods reaching the
host) use the same cluster.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.services import free_port

# A throwaway cluster's password: the tests assert that it never leaks into output.
PASSWORD = "tls-test-pw-Zq7"
USER = "scorer"
_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Certificate:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey


def make_ca(directory: Path, name: str = "scorer test CA") -> Certificate:
    """A self-signed CA, written as ``<directory>/ca.crt`` and ``ca.key``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 30 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, "ca", certificate, key)


def issue(ca: Certificate, directory: Path, hosts: Sequence[str]) -> Certificate:
    """A server certificate signed by ``ca`` for ``hosts``: ``<directory>/server.crt``, ``.key``."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 30 * _DAY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
        .sign(ca.private_key, hashes.SHA256())
    )
    return _write(directory, "server", certificate, key)


def _write(
    directory: Path, stem: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Certificate:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return Certificate(cert_path, key_path, certificate, key)


def _bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_version)
    if not found:
        raise RuntimeError("no /usr/lib/postgresql/*/bin/initdb: run hack/postgres.sh once")
    return found[-1].parent


def _version(path: Path) -> int:
    return int(path.parts[-3])


def _as_server_user(args: Sequence[str]) -> list[str]:
    """``args`` run as ``postgres`` when we are root (the server refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


@dataclass(frozen=True)
class Cluster:
    """A running throwaway cluster: its admin URL and its server log."""

    url: str
    log: Path


@contextmanager
def postgres_cluster(
    server: Certificate | None, listen: str = "127.0.0.1", port: int | None = None
) -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster; yields its admin URL (``postgres`` database) and log.

    With ``server``, ``ssl = on`` with that certificate and only ``hostssl`` connections are
    accepted; without, the server offers no TLS at all. The cluster and its files are removed
    afterwards.
    """
    port = port or free_port(listen)
    # The server user must enter the data directory: not under root's private temp dirs.
    data = Path(tempfile.mkdtemp(prefix="scorer-tls-pg-", dir="/var/tmp"))
    bin_dir = _bin()
    try:
        pwfile = data / "pw"
        pwfile.write_text(f"{PASSWORD}\n")
        pgdata = data / "data"
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run(
            _as_server_user(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            check=True,
            capture_output=True,
        )
        conf = [
            f"listen_addresses = '{listen}'",
            f"port = {port}",
            f"unix_socket_directories = '{pgdata}'",
            "fsync = off",
            "max_connections = 30",
            "shared_buffers = 16MB",
        ]
        hba = "host"
        if server is not None:
            for source, name in ((server.cert, "server.crt"), (server.key, "server.key")):
                shutil.copy(source, pgdata / name)
                (pgdata / name).chmod(0o600)
                if os.geteuid() == 0:
                    shutil.chown(pgdata / name, "postgres", "postgres")
            conf += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
            hba = "hostssl"
        else:
            conf.append("ssl = off")
        with (pgdata / "postgresql.conf").open("a") as handle:
            handle.write("\n".join(conf) + "\n")
        (pgdata / "pg_hba.conf").write_text(
            f"local all all trust\n{hba} all all 0.0.0.0/0 scram-sha-256\n"
        )
        subprocess.run(
            _as_server_user(
                [str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-l", str(data / "log"), "-w", "start"]
            ),
            check=True,
            capture_output=True,
        )
        try:
            yield Cluster(f"postgresql://{USER}:{PASSWORD}@{listen}:{port}/postgres", data / "log")
        finally:
            subprocess.run(
                _as_server_user(
                    [str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop"]
                ),
                check=False,
                capture_output=True,
            )
    finally:
        shutil.rmtree(data, ignore_errors=True)
