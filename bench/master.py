"""
A plain salt-master for the benchmark (no minion), started from the venv's
``salt-master`` script with a config of its own, and the CPU time of its
processes (Salt names them with setproctitle: ``... Reactor``, ``... EventReturn``,
``... Engine(salt.loaded.ext.engines.eventstore)``).
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import salt.config
import salt.utils.yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(procs):
    """User + system CPU seconds of these processes so far (gone ones count 0)."""
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


class BenchMaster:
    def __init__(self, root, name, overrides):
        self.root = Path(root) / name
        shutil.rmtree(self.root, ignore_errors=True)
        (self.root / "conf").mkdir(parents=True)
        (self.root / "srv" / "reactor").mkdir(parents=True)
        self.conf_file = self.root / "conf" / "master"
        config = {
            "id": f"bench-{name}",
            "root_dir": str(self.root),
            "user": pwd.getpwuid(os.geteuid()).pw_name,
            "interface": "127.0.0.1",
            "publish_port": free_port(),
            "ret_port": free_port(),
            "pki_dir": str(self.root / "pki"),
            "cachedir": str(self.root / "cache"),
            "sock_dir": str(self.root / "sock"),
            "pidfile": str(self.root / "master.pid"),
            "log_file": str(self.root / "master.log"),
            "key_logfile": str(self.root / "key.log"),
            "log_level_logfile": "warning",
            "file_roots": {"base": [str(self.root / "srv")]},
            "runner_dirs": [str(REPO / "_runners"), str(REPO / "bench" / "runners")],
            "engines_dirs": [str(REPO / "_engines")],
            # No minions: few request workers, so the consumers get the cores.
            "worker_threads": 2,
            "enable_fqdns_grains": False,
            "enable_gpu_grains": False,
        }
        config.update(overrides)
        self.conf_file.write_text(salt.utils.yaml.safe_dump(config, default_flow_style=False))
        self.proc = None

    @property
    def opts(self):
        return salt.config.master_config(str(self.conf_file))

    def start(self, timeout=60):
        log = open(self.root / "console.log", "wb")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(
            [str(BIN / "salt-master"), "-c", str(self.conf_file.parent)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        pub = Path(self.opts["sock_dir"]) / "master_event_pub.ipc"
        deadline = time.monotonic() + timeout
        while not pub.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"salt-master did not start; see {self.root / 'console.log'}")
            time.sleep(0.2)
        return self

    def processes(self, title=None):
        """The master's processes (itself and every child), or those whose title has ``title``."""
        main = psutil.Process(self.proc.pid)
        procs = [main, *main.children(recursive=True)]
        if title is None:
            return procs
        found = []
        for proc in procs:
            try:
                if title in " ".join(proc.cmdline()):
                    found.append(proc)
            except psutil.Error:
                pass
        return found

    def process(self, title, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            found = self.processes(title)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"no master process titled {title!r}")
            time.sleep(0.2)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self.proc = None
