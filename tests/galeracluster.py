"""A throwaway Galera cluster for the tests: three mariadbd nodes on loopback.

Each node is a `mysqlserver.ThrowawayServer` (own temp dir, free port,
teardown) with wsrep on.  Galera's rsync state transfer fails as root
("Permission denied"), so the nodes run as the `mysql` user, in directories
it owns.  Needs Debian's `galera-4` and `rsync`.

    cluster = GaleraCluster()          # ~13 s: the first node bootstraps, the others join
    cluster.nodes[1].kill()            # SIGKILL, as a crash
    cluster.nodes[1].rejoin()          # back, synced (IST or SST from the others)
    cluster.stop()

No pytest in here, so it can be used from a shell or a benchmark too.
"""

import os
import pwd
import shutil
import signal
import socket
import time

import mysqlserver

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
RUN_AS = "mysql"


def missing():
    """What this machine lacks to run a cluster, as Debian package names."""
    needs = {
        "mariadb-server": mysqlserver.server_binary(),
        "galera-4": os.path.exists(PROVIDER),
        "rsync": shutil.which("rsync"),
    }
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        needs["mariadb-server"] = False  # the package makes the user
    return [package for package, found in needs.items() if not found]


def _free_ports(count):
    """`count` distinct free ports (sockets held open together, so no repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class GaleraNode(mysqlserver.ThrowawayServer):
    """One node: `gcomm` is the cluster's Galera ports, `index` this node's."""

    def __init__(self, gcomm, index, ist_port, sst_port, timeout=120):
        self.gcomm, self.index = gcomm, index
        account = pwd.getpwnam(RUN_AS)
        self._uid, self._gid = account.pw_uid, account.pw_gid
        wsrep = [
            "--wsrep-on=ON",
            f"--wsrep-provider={PROVIDER}",
            "--wsrep-cluster-name=eventstore-test",
            "--wsrep-cluster-address=gcomm://" + ",".join(f"127.0.0.1:{p}" for p in gcomm),
            f"--wsrep-node-address=127.0.0.1:{gcomm[index]}",
            f"--wsrep-node-name=node{index + 1}",
            "--wsrep-provider-options="
            f"gmcast.listen_addr=tcp://127.0.0.1:{gcomm[index]};ist.recv_addr=127.0.0.1:{ist_port}",
            f"--wsrep-sst-receive-address=127.0.0.1:{sst_port}",
            "--wsrep-sst-method=rsync",
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
        ]
        # The first node starts a new cluster; the others, and the first when
        # it comes back, join it.
        self._bootstrap = index == 0
        super().__init__(timeout=timeout, extra_args=wsrep)

    def _common_options(self):
        options = [o for o in super()._common_options() if o != "--user=root"]
        return options + [f"--user={RUN_AS}"]

    def _install(self):
        # The mysql user writes its data, socket and error log here.
        os.chmod(self.tmpdir, 0o755)
        os.chown(self.tmpdir, self._uid, self._gid)
        super()._install()

    def _start(self, timeout):
        args = self.extra_args
        if self._bootstrap:
            self.extra_args = [*args, "--wsrep-new-cluster"]
        try:
            super()._start(timeout)
        finally:
            self.extra_args, self._bootstrap = args, False

    def status(self, name):
        """A `wsrep_*` status value, e.g. `wsrep_local_state_comment`."""
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute("SHOW STATUS LIKE %s", (name,))
            row = cur.fetchone()
            return row[1] if row else None

    def kill(self):
        """SIGKILL: a crash, no goodbye to the cluster."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def rejoin(self, timeout=120):
        """Start the killed or paused node again; it catches up from the others."""
        self._start(timeout)


class GaleraCluster:
    """Three nodes (or `size`), all synced when the constructor returns."""

    def __init__(self, size=3, timeout=120):
        missing_packages = missing()
        if missing_packages:
            raise FileNotFoundError(f"a Galera cluster needs: {' '.join(missing_packages)}")
        ports = _free_ports(3 * size)
        gcomm, ist, sst = ports[:size], ports[size : 2 * size], ports[2 * size :]
        self.nodes = []
        try:
            for index in range(size):
                self.nodes.append(GaleraNode(gcomm, index, ist[index], sst[index], timeout))
            self.wait_synced(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_synced(self, timeout=120, nodes=None):
        """Until every running node (or `nodes`) is Synced in a cluster of all running nodes."""
        nodes = [n for n in (nodes or self.nodes) if n.proc is not None]
        deadline = time.monotonic() + timeout
        while True:
            try:
                states = [
                    (n.status("wsrep_local_state_comment"), n.status("wsrep_cluster_size"))
                    for n in nodes
                ]
            except Exception:  # pylint: disable=broad-except
                states = None  # a node still starting
            if states and all(s == ("Synced", str(len(nodes))) for s in states):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Galera cluster is not synced after {timeout} s: {states}")
            time.sleep(0.2)

    def hosts(self):
        """The nodes as `eventstore: mysql_hosts` lists them."""
        return [f"{n.host}:{n.port}" for n in self.nodes]

    def stop(self):
        for node in reversed(self.nodes):
            node.stop()
