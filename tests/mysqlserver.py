"""A MySQL/MariaDB server for the tests: an existing one named by a URL, or a throwaway one.

    EVENTSTORE_TEST_MYSQL_URL=mysql://user:pass@host:port[?unix_socket=/path]

names an existing server (the tests only create and drop `eventstore_t_*` databases
on it). Without it, `ThrowawayServer` starts a private mariadbd in a temporary
directory, as the current user, and `stop()` deletes it again.

No pytest in here, so it can be used from a shell or a benchmark too.
"""

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

import pymysql

URL_ENV = "EVENTSTORE_TEST_MYSQL_URL"

# Debian keeps the server binaries in /usr/sbin, which is not on a normal user's PATH.
_SBIN_DIRS = ["/usr/sbin", "/usr/local/sbin", "/sbin"]


class Server:
    """Connection parameters for a server, plus the few things the tests do with it."""

    def __init__(self, host="127.0.0.1", port=3306, user="root", password="", unix_socket=None):
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.unix_socket = unix_socket

    def __repr__(self):
        return (
            f"<{type(self).__name__} {self.user}@{self.host}:{self.port} socket={self.unix_socket}>"
        )

    def connect(self, database=None):
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            unix_socket=self.unix_socket,
            database=database,
            charset="utf8mb4",
            autocommit=True,
        )

    def create_database(self):
        """Create a fresh, uniquely named utf8mb4 database and return its name."""
        name = "eventstore_t_" + secrets.token_hex(6)
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        return name

    def drop_database(self, name):
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")

    def stop(self):
        """Nothing to stop: a server named by URL belongs to someone else."""


def parse_url(url):
    """`mysql://user:pass@host:port?unix_socket=/path` -> Server (password, port optional)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb"):
        raise ValueError(f"{URL_ENV}: expected mysql://user:pass@host:port, got {url!r}")
    query = urllib.parse.parse_qs(parts.query)
    return Server(
        host=parts.hostname or "localhost",
        port=parts.port or 3306,
        user=urllib.parse.unquote(parts.username or "root"),
        password=urllib.parse.unquote(parts.password or ""),
        unix_socket=query.get("unix_socket", [None])[0],
    )


def find_program(*names):
    """The first of `names` on PATH or in an sbin directory, or None."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def server_binary():
    return find_program("mariadbd", "mysqld")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path, lines=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as exc:
        return f"({path}: {exc})"


class ThrowawayServer(Server):
    """A private mariadbd/mysqld in a temp dir; root has an empty password.

    `extra_args` go to the server's command line, e.g. `--ssl-ca=...` for TLS.
    """

    def __init__(self, timeout=60, extra_args=()):
        self.mysqld = server_binary()
        self.install_db = find_program("mariadb-install-db", "mysql_install_db")
        if not self.mysqld or not self.install_db:
            raise FileNotFoundError(
                "no mariadbd/mysqld and mariadb-install-db/mysql_install_db found"
            )
        self.tmpdir = tempfile.mkdtemp(prefix="eventstore-mariadb-")
        super().__init__(
            host="127.0.0.1",
            port=_free_port(),
            unix_socket=os.path.join(self.tmpdir, "mysqld.sock"),
        )
        self.datadir = os.path.join(self.tmpdir, "data")
        self.error_log = os.path.join(self.tmpdir, "error.log")
        self.extra_args = list(extra_args)
        self.proc = None
        atexit.register(self.stop)  # in case the caller never gets to stop()
        try:
            self._install()
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _common_options(self):
        # --no-defaults must come first: /etc/mysql/my.cnf would point at the system datadir.
        opts = [
            "--no-defaults",
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=16M",
            # Its own temporary files: in a shared /tmp, mariadb-install-db once
            # failed on a temporary table name another server had taken.
            f"--tmpdir={self.tmpdir}",
        ]
        if os.getuid() == 0:
            opts.append("--user=root")  # mariadbd refuses to run as root unless told so
        return opts

    def _install(self):
        cmd = [
            self.install_db,
            *self._common_options(),
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",  # root@localhost/127.0.0.1, no password
            "--skip-test-db",
            "--force",  # skip the hostname lookup check, which fails on boxes without DNS
        ]
        result = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}")

    def _start(self, timeout):
        cmd = [
            self.mysqld,
            *self._common_options(),
            f"--datadir={self.datadir}",
            f"--socket={self.unix_socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={os.path.join(self.tmpdir, 'mysqld.pid')}",
            f"--log-error={self.error_log}",
            "--skip-log-bin",
            "--skip-name-resolve",  # no DNS lookups per connection
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.mysqld} exited with {self.proc.returncode} while starting; "
                    f"{self.error_log} ends:\n{_tail(self.error_log)}"
                )
            try:
                # TCP on purpose: that is how Salt's mysql returner will connect.
                if self._our_server_answers_on_tcp():
                    return
            except pymysql.OperationalError:  # not pymysql.err.*: see _MySQLStore
                pass  # not listening yet, or a server of someone else's (access denied)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.mysqld} did not accept connections on {self.host}:{self.port} "
                    f"within {timeout}s; {self.error_log} ends:\n{_tail(self.error_log)}"
                )
            time.sleep(0.1)

    def _our_server_answers_on_tcp(self):
        # If another server grabbed the port since _free_port(), ours fails to bind:
        # make sure we are not talking to that one instead.
        with pymysql.connect(host=self.host, port=self.port, user="root", password="") as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT @@socket")
                return cur.fetchone()[0] == self.unix_socket

    @property
    def running(self):
        return self.proc is not None

    def pause(self):
        """Stop the server but keep its data, as an outage would."""
        self._terminate()

    def resume(self, timeout=60):
        """Start the paused server again on the same port with the same data."""
        self._start(timeout)

    def _terminate(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self):
        self._terminate()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def from_environment():
    """The server named by EVENTSTORE_TEST_MYSQL_URL, else a freshly started throwaway one."""
    url = os.environ.get(URL_ENV)
    if url:
        return parse_url(url)
    return ThrowawayServer()
