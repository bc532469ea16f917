"""TLS to PostgreSQL against a real TLS-enabled server with a CA made by the test.

``verify-full`` with the right CA connects; every certificate failure (an unknown CA, a
host-name mismatch, a missing or unreadable ``sslrootcert``, a server without TLS where
``sslmode`` requires it) is exit 2, kind ``database_tls``, saying which, without the password,
and is not retried.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from scorer.postgres import db
from tests.support import services, tls

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class TlsSetup:
    """The TLS server, its CA, another CA that did not sign it, and a server without TLS."""

    server: tls.Cluster
    ca: tls.Certificate
    other_ca: tls.Certificate
    plain: tls.Cluster
    directory: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSetup]:
    directory = tmp_path_factory.mktemp("tls")
    ca = tls.make_ca(directory / "ca")
    other_ca = tls.make_ca(directory / "other-ca", "another CA")
    certificate = tls.issue(ca, directory / "server", ["localhost", "127.0.0.1"])
    with tls.postgres_cluster(certificate) as server, tls.postgres_cluster(None) as plain:
        yield TlsSetup(server, ca, other_ca, plain, directory)


def with_query(url: str, **options: str) -> str:
    return url + "?" + "&".join(f"{key}={value}" for key, value in options.items())


def migrate(url: str) -> tuple[int, dict[str, object], str]:
    """``python -m scorer migrate`` against ``url``: exit code, last log line, all output."""
    result = services.run_scorer({"SCORER_DATABASE_URL": url}, "migrate")
    output = result.stdout + result.stderr
    return result.returncode, services.json_lines(result.stdout)[-1], output


def test_verify_full_with_the_right_ca_connects_over_tls(setup: TlsSetup) -> None:
    url = with_query(setup.server.url, sslmode="verify-full", sslrootcert=str(setup.ca.cert))
    code, last, output = migrate(url)
    assert code == 0, output
    assert last["event"] == "migrate.done"
    with closing(db.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert db.one_value(cur) is True
        cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'scoring'")
        assert db.one_value(cur) > 0


@pytest.mark.parametrize(
    ("name", "options", "says"),
    [
        ("unknown CA", {"sslmode": "verify-full", "sslrootcert": "OTHER_CA"}, "an unknown CA"),
        (
            "unknown CA, verify-ca",
            {"sslmode": "verify-ca", "sslrootcert": "OTHER_CA"},
            "unknown CA",
        ),
        (
            "host-name mismatch",
            {"sslmode": "verify-full", "sslrootcert": "CA", "host": "db.other.test"},
            "host-name mismatch",
        ),
        (
            "missing sslrootcert",
            {"sslmode": "verify-full", "sslrootcert": "MISSING"},
            "the sslrootcert file is missing or unreadable",
        ),
        (
            "unreadable sslrootcert",
            {"sslmode": "verify-full", "sslrootcert": "GARBAGE"},
            "the sslrootcert file is missing or unreadable",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and " " in value else None,
)
def test_a_certificate_failure_is_exit_2_database_tls(
    setup: TlsSetup, name: str, options: dict[str, str], says: str
) -> None:
    garbage = setup.directory / "garbage.crt"
    garbage.write_text("not a certificate\n")
    files = {
        "CA": setup.ca.cert,
        "OTHER_CA": setup.other_ca.cert,
        "MISSING": setup.directory / "no-such-ca.crt",
        "GARBAGE": garbage,
    }
    query = {key: str(files.get(value, value)) for key, value in options.items() if key != "host"}
    url = with_query(setup.server.url, **query)
    if "host" in options:  # the certificate's names checked against `host`, TCP to hostaddr
        url = url.replace("@127.0.0.1:", f"@{options['host']}:") + "&hostaddr=127.0.0.1"
    attempts_before = _handshakes_refused(setup.server)
    code, last, output = migrate(url)
    assert code == 2, output
    assert (last["kind"], last["exit_code"]) == ("database_tls", 2), name
    assert says in str(last["error"])
    assert tls.PASSWORD not in output
    assert "***" in str(last["error"])  # the URL is named, its password masked
    if options["sslrootcert"] == "OTHER_CA":  # the client refused the server: once, no retry
        assert _handshakes_refused(setup.server) == attempts_before + 1


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_tls_required_but_not_offered_is_exit_2(setup: TlsSetup, sslmode: str) -> None:
    url = with_query(setup.plain.url, sslmode=sslmode, sslrootcert=str(setup.ca.cert))
    code, last, output = migrate(url)
    assert code == 2, output
    assert (last["kind"], last["exit_code"]) == ("database_tls", 2)
    assert "the server offers no TLS, but sslmode requires it" in str(last["error"])
    assert tls.PASSWORD not in output


@pytest.mark.parametrize(
    ("sslmode", "kind", "says"),
    [
        # The server admits TLS connections only (hostssl): the message points at sslmode.
        ("disable", "database_auth", "if the server requires TLS, set sslmode=verify-full"),
        ("verify_full", "config", "invalid sslmode value"),  # refused by libpq itself
    ],
)
def test_a_wrong_sslmode_is_exit_2_and_named(
    setup: TlsSetup, sslmode: str, kind: str, says: str
) -> None:
    code, last, output = migrate(with_query(setup.server.url, sslmode=sslmode))
    assert code == 2, output
    assert (last["kind"], last["exit_code"]) == (kind, 2)
    assert says in str(last["error"])
    assert tls.PASSWORD not in output


def _handshakes_refused(cluster: tls.Cluster) -> int:
    """TLS handshakes the server saw a client abort (one per connection attempt)."""
    return cluster.log.read_text().count("could not accept SSL connection")


@pytest.fixture(scope="module")
def tls_registry(setup: TlsSetup) -> Iterator[str]:
    """A real ``mlflow server`` serving HTTPS only, its certificate signed by the test's CA."""
    certificate = tls.issue(setup.ca, setup.directory / "registry", ["127.0.0.1"])
    with services.mlflow_server(
        setup.directory / "mlflow", tls=(certificate.cert, certificate.key, setup.ca.cert)
    ) as uri:
        yield uri


def check_against(registry_uri: str, **env: str) -> tuple[int, dict[str, object], str]:
    """``python -m scorer check`` resolving a model from ``registry_uri``: code, last line, all."""
    settings = {
        "MLFLOW_TRACKING_URI": registry_uri,
        # MLflow's own retries would take minutes here (about 250 s); no retry cures these.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "SCORER_DATABASE_URL": services.admin_url(),
        "SCORER_MODEL_NAME": "tls-probe-never-registered",
        "SCORER_MODEL_ALIAS": "champion",
        "SCORER_FEATURES_TABLE": "features.customers",
        "SCORER_ENTITY_COLUMN": "customer_id",
        **env,
    }
    result = services.run_scorer(settings, "check")
    return result.returncode, services.json_lines(result.stdout)[-1], result.stdout + result.stderr


def test_the_registry_over_tls_with_its_ca_answers(setup: TlsSetup, tls_registry: str) -> None:
    code, last, output = check_against(
        tls_registry, MLFLOW_TRACKING_SERVER_CERT_PATH=str(setup.ca.cert)
    )
    assert (code, last["kind"]) == (2, "model_not_found"), output  # it answered, over TLS


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("unknown CA", "unable to get local issuer certificate"),
        ("host-name mismatch", "Hostname mismatch"),
        ("missing CA bundle", "the CA bundle cannot be read"),
    ],
)
def test_a_registry_certificate_failure_is_exit_2_registry_tls(
    setup: TlsSetup, tls_registry: str, name: str, says: str
) -> None:
    uri, bundle = tls_registry, str(setup.ca.cert)
    if name == "unknown CA":
        bundle = str(setup.other_ca.cert)
    elif name == "host-name mismatch":  # the certificate names 127.0.0.1 only
        uri = uri.replace("127.0.0.1", "localhost")
    else:
        bundle = str(setup.directory / "no-such-bundle.pem")
    code, last, output = check_against(uri, MLFLOW_TRACKING_SERVER_CERT_PATH=bundle)
    assert code == 2, output
    assert (last["kind"], last["exit_code"]) == ("registry_tls", 2)
    assert says in str(last["error"])
    assert "MLFLOW_TRACKING_SERVER_CERT_PATH" in str(last["error"])
