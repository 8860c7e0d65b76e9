"""A PostgreSQL server for the tests: an existing one named by a URL, or a throwaway one.

    EVENTSTORE_TEST_POSTGRES_URL=postgresql://user:pass@host:port

names an existing server (the tests only create and drop `eventstore_t_*` databases
and roles on it). Without it, `ThrowawayServer` runs Debian's `initdb` and `pg_ctl`
(`/usr/lib/postgresql/<version>/bin`) on a temporary data directory of its own, with
its own port and unix socket directory, and `stop()` deletes it again. They refuse
to run as root: as root, they run as the `postgres` user (`runuser`).

No pytest in here, so it can be used from a shell or a benchmark too, like mysqlserver.
"""

import atexit
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import urllib.parse

import psycopg
from mysqlserver import _free_port, _tail

URL_ENV = "EVENTSTORE_TEST_POSTGRES_URL"


class Server:
    """Connection parameters for a server, plus the few things the tests do with it."""

    def __init__(self, host="127.0.0.1", port=5432, user="postgres", password=""):
        self.host = host
        self.port = port
        self.user = user
        self.password = password

    def __repr__(self):
        return f"<{type(self).__name__} {self.user}@{self.host}:{self.port}>"

    def connect(self, database="postgres", **settings):
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            autocommit=True,
            **settings,
        )

    def create_database(self):
        """Create a fresh, uniquely named UTF-8 database and return its name."""
        name = "eventstore_t_" + secrets.token_hex(6)
        with self.connect() as conn:
            conn.execute(f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0")
        return name

    def drop_database(self, name):
        with self.connect() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self):
        """Nothing to stop: a server named by URL belongs to someone else."""


def parse_url(url):
    """`postgresql://user:pass@host:port` -> Server (password, port optional)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"{URL_ENV}: expected postgresql://user:pass@host:port, got {url!r}")
    return Server(
        host=parts.hostname or "localhost",
        port=parts.port or 5432,
        user=urllib.parse.unquote(parts.username or "postgres"),
        password=urllib.parse.unquote(parts.password or ""),
    )


def bin_dir():
    """Debian's newest PostgreSQL binaries (initdb, pg_ctl), or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(path.split("/")[-3]) if path.split("/")[-3].isdigit() else 0,
    )
    return os.path.dirname(found[-1]) if found else None


def server_binary():
    folder = bin_dir()
    return os.path.join(folder, "pg_ctl") if folder else None


class ThrowawayServer(Server):
    """A private PostgreSQL in a temp dir; the superuser `postgres` has a random password.

    `settings` are server settings (`-c name=value`), e.g. `ssl=on` for TLS;
    `hba` lines go before the default ones in pg_hba.conf.
    """

    def __init__(self, settings=None, hba=(), timeout=60):
        self.bin = bin_dir()
        if not self.bin:
            raise FileNotFoundError(
                "no /usr/lib/postgresql/*/bin/initdb (Debian's postgresql package)"
            )
        self.tmpdir = tempfile.mkdtemp(prefix="eventstore-postgres-")
        super().__init__(port=_free_port(), password=secrets.token_hex(12))
        self.datadir = os.path.join(self.tmpdir, "data")
        self.socket_dir = os.path.join(self.tmpdir, "run")
        self.log = os.path.join(self.tmpdir, "postgres.log")
        self.settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": self.socket_dir,
            # Throwaway data: no fsync, and what a test machine of 2 cores affords.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "64MB",
            "max_connections": "100",
            **(settings or {}),
        }
        self.timeout = timeout
        atexit.register(self.stop)  # in case the caller never gets to stop()
        try:
            self._install(hba)
            self.resume()
        except BaseException:
            self.stop()
            raise

    def _as_owner(self, *cmd, **kwargs):
        # initdb and pg_ctl refuse to run as root: then they run as postgres.
        prefix = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        result = subprocess.run(
            [*prefix, *cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **kwargs,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{self.log} ends:\n{_tail(self.log)}"
            )
        return result.stdout

    def chown(self, path):
        """Give `path` to the user the server runs as (its key files must be its own)."""
        if os.getuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def _install(self, hba):
        os.mkdir(self.socket_dir)
        pwfile = os.path.join(self.tmpdir, "pw")
        with open(pwfile, "w", encoding="utf-8") as handle:
            handle.write(self.password)
        for path in (self.tmpdir, self.socket_dir, pwfile):
            self.chown(path)
        self._as_owner(
            os.path.join(self.bin, "initdb"),
            f"--pgdata={self.datadir}",
            "--username=postgres",
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        os.unlink(pwfile)
        if hba:
            path = os.path.join(self.datadir, "pg_hba.conf")
            with open(path, encoding="utf-8") as handle:
                default = handle.read()
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("\n".join(hba) + "\n" + default)

    @property
    def running(self):
        return os.path.exists(os.path.join(self.datadir, "postmaster.pid"))

    def pause(self):
        """Stop the server but keep its data, as an outage would."""
        self._as_owner(
            os.path.join(self.bin, "pg_ctl"), f"--pgdata={self.datadir}", "--mode=fast", "stop"
        )

    def resume(self):
        """Start the (paused) server on the same port with the same data; returns once it takes connections."""
        options = " ".join(f"-c {name}={value}" for name, value in self.settings.items())
        self._as_owner(
            os.path.join(self.bin, "pg_ctl"),
            f"--pgdata={self.datadir}",
            f"--log={self.log}",
            f"--options={options}",
            f"--timeout={self.timeout}",
            "--wait",
            "start",
        )

    def stop(self):
        if self.running:
            try:
                self.pause()
            except RuntimeError:
                pass
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def from_environment():
    """The server named by EVENTSTORE_TEST_POSTGRES_URL, else a freshly started throwaway one."""
    url = os.environ.get(URL_ENV)
    if url:
        return parse_url(url)
    return ThrowawayServer()
