"""
TLS to MySQL with the mysql returner's keys (mysql.ssl_ca, ssl_cert, ssl_key),
against a throwaway MariaDB that has TLS on and users that require it; and to
PostgreSQL with the pgjsonb returner's keys (sslmode: verify-full, ...).
"""

import logging
import os
import shutil
import subprocess

import pytest
from runnerlib import JID, load_runner, pgjsonb_keys, ret_event

import mysqlserver
import pgserver

PASSWORD = "tls-user-pw"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder, name):
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip


def make_cert(folder, name, ca, extensions):
    (folder / f"{name}.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n" + extensions
    )
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
        "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=folder,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        cwd=folder,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A CA, a server and a client certificate from it, and a CA that signed neither."""
    if not mysqlserver.find_program("openssl"):
        pytest.skip("no openssl command to make certificates with")
    folder = tmp_path_factory.mktemp("tls")
    make_ca(folder, "ca")
    make_ca(folder, "other-ca")
    make_cert(folder, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
              "extendedKeyUsage=serverAuth\n")  # fmt: skip
    make_cert(folder, "client", "ca", "extendedKeyUsage=clientAuth\n")
    return folder


@pytest.fixture(scope="module")
def tls_server(tls, mysql_server):  # mysql_server: no MySQL binaries, no test
    if not mysqlserver.server_binary():
        pytest.skip("the TLS tests start a MariaDB server of their own")
    server = mysqlserver.ThrowawayServer(
        extra_args=[
            f"--ssl-ca={tls / 'ca.pem'}",
            f"--ssl-cert={tls / 'server.pem'}",
            f"--ssl-key={tls / 'server.key'}",
        ]
    )
    try:
        name = server.create_database()
        with server.connect() as conn, conn.cursor() as cur:
            for user, require in (("tls_ssl", "SSL"), ("tls_x509", "X509")):
                cur.execute(
                    f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s REQUIRE {require}", (PASSWORD,)
                )
                cur.execute(f"GRANT ALL ON `{name}`.* TO '{user}'@'%'")
        server.database = name
        yield server
    finally:
        server.stop()


def runner(tls_server, user, **ssl):
    return load_runner(
        {
            "cachedir": tls_server.tmpdir,
            "eventstore": {"verify_returns": False},
            "mysql.host": tls_server.host,
            "mysql.port": tls_server.port,
            "mysql.user": user,
            "mysql.pass": PASSWORD,
            "mysql.db": tls_server.database,
            **{f"mysql.ssl_{name}": str(path) for name, path in ssl.items()},
        }
    )


def cipher(es):
    return es._store().select("SHOW STATUS LIKE 'Ssl_cipher'", ())[0][1]


def test_runner_stores_over_tls_with_the_returners_ssl_keys(tls, tls_server):
    es = runner(tls_server, "tls_x509", ca=tls / "ca.pem", cert=tls / "client.pem",
                key=tls / "client.key")  # fmt: skip
    es.init()
    assert es.store(*ret_event(jid=JID, minion="tls-x509")) == "stored"
    assert cipher(es)


def test_ssl_ca_alone_is_enough_for_a_user_that_requires_ssl(tls, tls_server):
    es = runner(tls_server, "tls_ssl", ca=tls / "ca.pem")
    es.init()  # status is healthy only with the tables, whichever test ran first
    assert es.status()["healthy"] is True
    assert cipher(es)


# Without any mysql.ssl_* key PyMySQL 1.2+ still tries TLS, but without
# verifying the server (so a REQUIRE SSL user gets in, unverified); a user
# that must show a client certificate cannot.
def test_without_tls_settings_status_says_the_login_is_refused(tls_server):
    report = runner(tls_server, "tls_x509").status()
    assert report["healthy"] is False
    assert report["problems"][0].startswith('cannot connect: (1045, "Access denied for user')


def test_store_without_tls_settings_spools_with_a_log_line_naming_the_database(tls_server, caplog):
    es = runner(tls_server, "tls_x509")
    with caplog.at_level(logging.WARNING):
        assert es.store(*ret_event()) == "spooled"
    assert f"mysql://tls_x509@127.0.0.1:{tls_server.port}/" in caplog.text
    assert "Access denied" in caplog.text and PASSWORD not in caplog.text


def test_a_user_that_requires_a_client_certificate_is_refused_without_one(tls, tls_server):
    report = runner(tls_server, "tls_x509", ca=tls / "ca.pem").status()
    assert report["healthy"] is False
    assert "Access denied" in report["problems"][0]


def test_a_server_certificate_from_another_ca_is_refused(tls, tls_server):
    report = runner(tls_server, "tls_ssl", ca=tls / "other-ca.pem").status()
    assert report["healthy"] is False
    assert "CERTIFICATE_VERIFY_FAILED" in report["problems"][0]


# PostgreSQL, with the pgjsonb returner's keys (returner.pgjsonb.sslmode, sslrootcert,
# sslcert, sslkey): a throwaway server that takes TLS connections only, and a
# role (named as the client certificate's CN) that logs in by certificate.


@pytest.fixture(scope="module")
def pg_tls_server(tls, postgres_server):  # postgres_server: no PostgreSQL, no test
    if not pgserver.server_binary():
        pytest.skip("the TLS tests start a PostgreSQL server of their own")
    server = pgserver.ThrowawayServer(
        hba=[
            "hostnossl all all 127.0.0.1/32 reject",
            "hostssl all client 127.0.0.1/32 cert",
        ]
    )
    try:
        server.pause()
        for name in ("ca.pem", "server.pem", "server.key"):
            shutil.copy(tls / name, server.tmpdir)  # the server reads them as its own user
            server.chown(os.path.join(server.tmpdir, name))
        folder = server.tmpdir
        server.settings.update(
            ssl="on",
            ssl_ca_file=f"{folder}/ca.pem",
            ssl_cert_file=f"{folder}/server.pem",
            ssl_key_file=f"{folder}/server.key",
        )
        server.resume()
        server.database = server.create_database()
        load_runner(
            {"eventstore": {"verify_returns": False}, **pgjsonb_keys(server, server.database)}
        ).init()
        with server.connect(server.database, sslmode="require") as conn:
            conn.execute(f"CREATE ROLE tls_user LOGIN PASSWORD '{PASSWORD}'")
            conn.execute("CREATE ROLE client LOGIN")
            conn.execute("GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO tls_user, client")
        yield server
    finally:
        server.stop()


def pg_runner(server, user, **ssl):
    return load_runner(
        {
            "cachedir": server.tmpdir,
            "eventstore": {"verify_returns": False},
            **pgjsonb_keys(server, server.database, user=user, password=PASSWORD),
            **{f"returner.pgjsonb.{name}": str(value) for name, value in ssl.items()},
        }
    )


def pg_tls_in_use(es):
    return es._store().select("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", ())[0][0]


def test_postgres_stores_over_tls_verifying_the_server_with_verify_full(tls, pg_tls_server):
    es = pg_runner(pg_tls_server, "tls_user", sslmode="verify-full", sslrootcert=tls / "ca.pem")
    assert es.store(*ret_event(minion="tls-verified")) == "stored"
    assert pg_tls_in_use(es) is True


def test_postgres_verify_full_refuses_a_server_certificate_from_another_ca(tls, pg_tls_server):
    es = pg_runner(
        pg_tls_server, "tls_user", sslmode="verify-full", sslrootcert=tls / "other-ca.pem"
    )
    report = es.status()
    assert report["healthy"] is False
    assert "certificate verify failed" in report["problems"][0]


def test_postgres_logs_in_with_a_client_certificate(tls, pg_tls_server):
    es = pg_runner(pg_tls_server, "client", sslmode="verify-full", sslrootcert=tls / "ca.pem",
                   sslcert=tls / "client.pem", sslkey=tls / "client.key")  # fmt: skip
    assert es.store(*ret_event(minion="tls-cert")) == "stored"


def test_postgres_role_that_logs_in_by_certificate_is_refused_without_one(tls, pg_tls_server):
    es = pg_runner(pg_tls_server, "client", sslmode="verify-full", sslrootcert=tls / "ca.pem")
    report = es.status()
    assert report["healthy"] is False
    assert "connection requires a valid client certificate" in report["problems"][0]


def test_postgres_server_that_takes_tls_only_refuses_sslmode_disable(pg_tls_server, caplog):
    es = pg_runner(pg_tls_server, "tls_user", sslmode="disable")
    with caplog.at_level(logging.WARNING):
        assert es.store(*ret_event()) == "spooled"
    assert f"postgresql://tls_user@127.0.0.1:{pg_tls_server.port}/" in caplog.text
    assert "no encryption" in caplog.text and PASSWORD not in caplog.text
