"""
TLS to MySQL with the mysql returner's keys (mysql.ssl_ca, ssl_cert, ssl_key),
against a throwaway MariaDB that has TLS on and users that require it.
"""

import logging
import subprocess

import pytest
from runnerlib import JID, load_runner, ret_event

import mysqlserver

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
    assert report["problems"][0].startswith("cannot connect: (1045, \"Access denied for user")


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
