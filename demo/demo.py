#!/usr/bin/env python3
"""
eventstore demo: a real salt-master and salt-minion on loopback, set up the way
an admin installs eventstore on a real master, a few real jobs, and what
``salt-run eventstore.query`` shows of them.

Run it with the Python of a virtualenv that has Salt (``make demo`` does).
Everything lives in ``.demo/`` at the root of the repository, wiped at each run.

Storage is SQLite under the master's cachedir.  Set
``EVENTSTORE_MYSQL_URL=mysql://user:pass@host:port/db`` to store into
MySQL/MariaDB instead (the database must exist; ``eventstore.init`` makes the
tables).
"""

import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import salt.utils.yaml

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / ".demo"
# Not resolved: the venv's bin/python is a symlink to the base interpreter,
# and the salt scripts sit beside the venv's one.
BIN = Path(sys.executable).parent
MINION_ID = "demo-minion"
# A UNIX socket path has at most 107 bytes; Salt's longest below sock_dir is
# minion_event_<10 hex>_pub.ipc.
SOCK_NAME_MAX = len("/minion_event_0123456789_pub.ipc")


class DemoFailed(Exception):
    pass


def say(*lines):
    print(*lines, sep="\n", flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def yaml_path(path):
    """A path as a plain YAML scalar when it can be one, else quoted."""
    text = str(path)
    if all(c.isalnum() or c in "/._-+" for c in text):
        return text
    return json.dumps(text)  # a JSON string is a valid double-quoted YAML scalar


def mysql_config(url):
    """The mysql returner's keys for ``mysql://user:pass@host:port/db``."""
    parts = urllib.parse.urlsplit(url)
    db = parts.path.lstrip("/")
    if parts.scheme != "mysql" or not parts.hostname or not db:
        raise DemoFailed("EVENTSTORE_MYSQL_URL must look like mysql://user:pass@host:port/db")
    return {
        "mysql.host": parts.hostname,
        "mysql.port": parts.port or 3306,
        "mysql.user": urllib.parse.unquote(parts.username or ""),
        "mysql.pass": urllib.parse.unquote(parts.password or ""),
        "mysql.db": urllib.parse.unquote(db),
    }


class Demo:
    def __init__(self):
        self.procs = {}  # name -> (Popen, console log path)
        self.link = None
        # The effective user, which Salt compares `user:` with; getpass.getuser()
        # believes $USER/$LOGNAME, which su and sudo can leave pointing elsewhere.
        self.user = pwd.getpwuid(os.geteuid()).pw_name

    # -- setup ---------------------------------------------------------------

    def prepare(self):
        for script in ("salt", "salt-run", "salt-master", "salt-minion"):
            if not (BIN / script).exists():
                raise DemoFailed(
                    f"{BIN / script} is missing: run this with the Python of a venv that has Salt "
                    "(make demo)"
                )
        if DEMO.is_symlink() or DEMO.is_file():
            DEMO.unlink()
        shutil.rmtree(DEMO, ignore_errors=True)
        DEMO.mkdir()
        root = DEMO
        if len(str(DEMO / "minion" / "sock")) + SOCK_NAME_MAX > 107:
            # Too deep for UNIX sockets: reach .demo through a short symlink.
            self.link = Path(tempfile.mkdtemp(prefix="esdemo-")) / "d"
            self.link.symlink_to(DEMO)
            root = self.link
        self.conf = root / "conf"
        srv = root / "srv"
        for sub in ("conf", "srv/salt/_runners", "srv/reactor", "master", "minion", "logs"):
            (root / sub).mkdir(parents=True, exist_ok=True)

        # The admin's install: runner and the package it imports under file_roots,
        # reactor SLS in /srv/reactor.
        shutil.copy(REPO / "_runners" / "eventstore.py", srv / "salt" / "_runners")
        shutil.copytree(
            REPO / "src" / "saltext",
            srv / "salt" / "_runners" / "saltext",
            ignore=shutil.ignore_patterns("__pycache__"),
            dirs_exist_ok=True,
        )
        shutil.copy(REPO / "reactor" / "eventstore.sls", srv / "reactor" / "eventstore.sls")
        (srv / "salt" / "demo.sls").write_text(
            "demo file:\n"
            "  file.managed:\n"
            f"    - name: {yaml_path(root / 'minion' / 'demo-file.txt')}\n"
            "    - contents: written by the eventstore demo\n"
            "\n"
            "demo change:\n"
            "  test.succeed_with_changes: []\n",
            encoding="utf-8",
        )

        self.pub_port, self.ret_port = free_port(), free_port()
        while self.ret_port == self.pub_port:
            self.ret_port = free_port()

        common = {
            "root_dir": str(root),
            "user": self.user,
            "log_level_logfile": "info",
            # Reverse DNS of every address and GPU probing only slow a demo down.
            "enable_fqdns_grains": False,
            "enable_gpu_grains": False,
        }
        master = dict(
            common,
            interface="127.0.0.1",
            publish_port=self.pub_port,
            ret_port=self.ret_port,
            auto_accept=True,
            pki_dir=str(root / "master" / "pki"),
            cachedir=str(root / "master" / "cache"),
            sock_dir=str(root / "master" / "sock"),
            pidfile=str(root / "master" / "salt-master.pid"),
            log_file=str(root / "logs" / "master.log"),
            key_logfile=str(root / "logs" / "key.log"),
            file_roots={"base": [str(srv / "salt")]},
        )
        url = os.environ.get("EVENTSTORE_MYSQL_URL")
        if url:
            master.update(mysql_config(url))
        minion = dict(
            common,
            id=MINION_ID,
            master="127.0.0.1",
            master_port=self.ret_port,
            publish_port=self.pub_port,
            pki_dir=str(root / "minion" / "pki"),
            cachedir=str(root / "minion" / "cache"),
            sock_dir=str(root / "minion" / "sock"),
            pidfile=str(root / "minion" / "salt-minion.pid"),
            log_file=str(root / "logs" / "minion.log"),
            acceptance_wait_time=1,
            random_reauth_delay=0,
        )
        reactor_sls = yaml_path(srv / "reactor" / "eventstore.sls")
        master_conf = self.conf / "master"
        master_conf.touch(mode=0o600)  # it may hold the database password
        master_conf.write_text(
            salt.utils.yaml.safe_dump(master, default_flow_style=False)
            + "\n"
            + "reactor:\n"
            + "  - 'salt/job/*/ret/*':\n"
            + f"    - {reactor_sls}\n",
            encoding="utf-8",
        )
        (self.conf / "minion").write_text(
            salt.utils.yaml.safe_dump(minion, default_flow_style=False), encoding="utf-8"
        )
        storage = "MySQL (EVENTSTORE_MYSQL_URL)" if url else "SQLite under the master cachedir"
        say(
            f"demo folder: {DEMO}",
            f"master on 127.0.0.1 ports {self.pub_port} (publish) and {self.ret_port} (return), "
            f"running as {self.user}; storage: {storage}",
        )

    # -- processes -------------------------------------------------------------

    def start(self, name):
        log_path = DEMO / "logs" / f"{name}.console.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(BIN / name), "-c", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(DEMO),
                # Its own process group: Ctrl-C in the terminal reaches only us,
                # and we stop the daemon (and whatever it forked) ourselves.
                start_new_session=True,
            )
        self.procs[name] = (proc, log_path)
        say(f"started {name} (pid {proc.pid})")
        return proc

    def check_alive(self):
        for name, (proc, log_path) in self.procs.items():
            if proc.poll() is not None:
                raise DemoFailed(f"{name} exited with code {proc.returncode}, see {log_path}")

    def stop_all(self, grace=20):
        """
        Stop every daemon we started, all at once: SIGTERM to each one's whole
        process group (as systemd stops a unit; Salt 3007's minion otherwise
        waits ~30 s for job processes that linger after returning), then
        SIGKILL to whatever of a group is left after ``grace`` seconds.
        """
        begun = time.monotonic()
        running = [(name, proc) for name, (proc, _) in self.procs.items() if proc.poll() is None]
        if running:
            say("stopping " + ", ".join(name for name, _ in running))
        for _, proc in running:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for name, proc in running:
            try:
                proc.wait(timeout=max(0.1, begun + grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop within {grace} s: killing it")
        for proc, _ in self.procs.values():
            # The group id is the daemon's pid (start_new_session): its leftovers.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if proc.poll() is None:
                proc.wait(timeout=10)
        if running:
            say(f"stopped in {time.monotonic() - begun:.1f} s")
        self.procs.clear()
        if self.link is not None:
            self.link.unlink(missing_ok=True)
            self.link.parent.rmdir()
            self.link = None

    # -- the salt command line -------------------------------------------------

    def cli(self, script, *args, timeout=120):
        """Run ``<script> -c <conf> args...``; returns (exit code, stdout, stderr)."""
        cmd = [str(BIN / script), "-c", str(self.conf), *args]
        try:
            proc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise DemoFailed(f"{script} {shlex.join(args)} took over {timeout} s") from None
        return (
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )

    def cli_json(self, script, *args, timeout=120):
        code, out, err = self.cli(script, "--out=json", *args, timeout=timeout)
        try:
            return code, json.loads(out), err
        except ValueError:
            return code, None, err or out

    def show(self, script, *args):
        """
        Run a command with its output straight to the terminal, as a person
        sees it.  Its stderr is shown only if it fails: Salt 3008's salt-run
        warns about its own unclosed objects at every exit.
        """
        say(f"$ {script} {shlex.join(args)}")
        # Salt colours unless its output is a pipe: not into a file either.
        color = [] if sys.stdout.isatty() else ["--no-color"]
        cmd = [str(BIN / script), "-c", str(self.conf), *color, *args]
        try:
            proc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120, check=False
            )
        except subprocess.TimeoutExpired:
            raise DemoFailed(f"{script} {shlex.join(args)} took over 120 s") from None
        sys.stdout.flush()
        if proc.returncode != 0:
            sys.stdout.write(proc.stderr.decode("utf-8", "replace"))
            raise DemoFailed(f"{script} {shlex.join(args)} exited with {proc.returncode}")

    # -- the demo --------------------------------------------------------------

    def wait_for_master(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if port_open(self.ret_port) and port_open(self.pub_port):
                return
            time.sleep(0.5)
        raise DemoFailed(f"the master did not open its ports within {timeout} s")

    def wait_for_minion(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            _, data, _ = self.cli_json("salt", "-t", "10", MINION_ID, "test.ping", timeout=60)
            if isinstance(data, dict) and data.get(MINION_ID) is True:
                return
            time.sleep(1)
        raise DemoFailed(f"{MINION_ID} did not answer test.ping within {timeout} s")

    def run_job(self, *args):
        """Run a job on the minion, waiting for its return; give back its jid."""
        code, out, err = self.cli("salt", "--show-jid", "--out=json", "-t", "90", MINION_ID, *args)
        jid = None
        for line in out.splitlines():
            if line.startswith("jid: "):
                jid = line.split(":", 1)[1].strip()
                break
        if not jid:
            raise DemoFailed(f"salt {shlex.join(args)} gave no jid (exit {code}): {out}{err}")
        return jid

    def stored(self, jid):
        _, data, _ = self.cli_json("salt-run", "eventstore.query", f"jid={jid}")
        if isinstance(data, dict) and "outputter" in data and "data" in data:
            data = data["data"]
        return isinstance(data, dict) and MINION_ID in data

    def wait_stored(self, jid, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stored(jid):
                return
            time.sleep(1)
        raise DemoFailed(f"the return of job {jid} was not in the store after {timeout} s")

    def run(self):
        self.prepare()
        self.start("salt-master")
        self.wait_for_master()

        # Sync before the minion exists, hence before any job event: the
        # reactor keeps the runner loader of its first reaction for a minute.
        code, synced, err = self.cli_json("salt-run", "saltutil.sync_runners")
        if code != 0 or "runners.eventstore" not in (synced or []):
            raise DemoFailed(f"saltutil.sync_runners did not sync eventstore: {synced or err}")
        say("synced runners: " + ", ".join(synced))
        code, out, err = self.cli("salt-run", "eventstore.init")
        if code != 0:
            raise DemoFailed(f"eventstore.init failed (exit {code}): {out}{err}")
        say("eventstore.init: " + out.strip())

        self.start("salt-minion")
        started = time.monotonic()
        self.wait_for_minion()
        say(f"{MINION_ID} answers test.ping ({time.monotonic() - started:.0f} s)")

        jobs = [
            ("test.ping", ["test.ping"]),
            ("cmd.run with non-ASCII output", ["cmd.run", "echo grüße from the demo"]),
            ("state.apply demo", ["state.apply", "demo"]),
            ("a failing command", ["cmd.run", "echo this command fails on purpose; exit 3"]),
        ]
        done = []
        for title, args in jobs:
            jid = self.run_job(*args)
            self.wait_stored(jid)
            done.append((title, args, jid))

        for title, args, jid in done:
            say("", f"=== {title}: salt {MINION_ID} {shlex.join(args)}  (jid {jid})")
            self.show("salt-run", "eventstore.query", f"jid={jid}")
        say("", "=== the failed returns")
        self.show("salt-run", "eventstore.query", "success=False")
        say("", "=== the latest five stored returns")
        self.show("salt-run", "eventstore.query", "limit=5")

    def logs(self):
        return sorted((DEMO / "logs").glob("*.log")) if (DEMO / "logs").is_dir() else []


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main():
    # SIGTERM (kill, CI) and SIGHUP (terminal closed) end the demo like Ctrl-C:
    # through the finally below, which stops the daemons.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    demo = Demo()
    started = time.monotonic()
    code = 0
    try:
        demo.run()
    except DemoFailed as exc:
        code = 1
        say("", f"demo FAILED: {exc}")
    except KeyboardInterrupt:
        code = 130
        say("", "interrupted")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        say("", "terminated by a signal")
    except Exception:
        code = 1
        import traceback

        traceback.print_exc()
    finally:
        # Not to be cut short by a second Ctrl-C: it ends within ~30 s anyway.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        demo.stop_all()
    if code:
        say("logs:", *(f"  {path}" for path in demo.logs()))
    else:
        say(f"demo done in {time.monotonic() - started:.0f} s; logs in {DEMO / 'logs'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
