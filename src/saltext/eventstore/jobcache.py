"""
The master's job cache (``local_cache``): the ground truth a return is
checked against, where the whole of a trimmed return is found, and where a
job's load is read.  Owns the per-process memory of it (each job's function,
the loads already given, the returns waited for in vain), which lives in the
runtime of one loaded runner.
"""

import os
import time

import salt.payload
import salt.utils.jid

from saltext.eventstore.rows import Refused


class JobCache:
    """
    Reads one minion's return of one job straight from local_cache's files
    (``<cachedir>/jobs/<hash>/<minion>/return.p``): asking the returner API
    (``local_cache.get_jid``) would read every minion's return for each one.
    """

    def __init__(self, opts):
        self.job_dir = os.path.join(opts.get("cachedir", "/var/cache/salt/master"), "jobs")
        self.hash_type = opts.get("hash_type", "sha256")
        self._funs = {}
        self._given_up = set()
        self._loads_given = set()

    def _read(self, *parts):
        """
        One file of the job cache, or ``None`` when there is none.  local_cache
        writes each file whole (write, then rename), so a file that does not
        decode is damaged: refused, with one log line.
        """
        path = os.path.join(
            salt.utils.jid.jid_dir(parts[0], self.job_dir, self.hash_type), *parts[1:]
        )
        try:
            with open(path, "rb") as handle:
                return salt.payload.load(handle)
        except FileNotFoundError:
            return None
        except Exception as exc:  # pylint: disable=broad-except
            raise Refused(f"the master job cache's {parts[-1]} cannot be read: {exc}") from exc

    def ret(self, jid, minion):
        ret = self._read(jid, minion, "return.p")
        if ret is None:
            return None
        out = self._read(jid, minion, "out.p")
        if out is not None:
            ret["out"] = out
        return ret

    def ready(self, jid, minion=None, out=False):
        """
        True once the job cache holds the job's load (``minion`` None) or the
        minion's return, with its outputter when ``out``: the master writes
        return.p and out.p one after the other.  Cheap: no file is read.
        """
        folder = salt.utils.jid.jid_dir(jid, self.job_dir, self.hash_type)
        if minion is None:
            return os.path.exists(os.path.join(folder, ".load.p"))
        return os.path.exists(os.path.join(folder, minion, "return.p")) and (
            not out or os.path.exists(os.path.join(folder, minion, "out.p"))
        )

    def known(self, jid):
        """
        True once the master has a folder for the job: it makes it before it
        publishes a job, and before it fires the return of a job a minion
        started itself (a scheduled job), whose load it writes only after
        firing that return.  A jid without one was never seen by this master.
        """
        return os.path.isdir(salt.utils.jid.jid_dir(jid, self.job_dir, self.hash_type))

    def expects(self, jid, minion):
        """
        False when the job's minion lists (``.minions.p``, written before the
        job is published, and a syndic's ``.minions.<syndic>.p``) leave
        ``minion`` out, or when a return of ``minion`` for the job was already
        waited for in vain; True otherwise, also for a job without a list (a
        minion's own scheduled job).
        """
        if (jid, minion) in self._given_up:
            return False
        folder = salt.utils.jid.jid_dir(jid, self.job_dir, self.hash_type)
        try:
            lists = [
                name
                for name in os.listdir(folder)
                if name.startswith(".minions") and name.endswith(".p")
            ]
            for name in lists:
                minions = self._read(jid, name)
                if not isinstance(minions, list) or minion in minions:
                    return True
        except Exception:  # pylint: disable=broad-except
            return True  # gone, or being written (it is not written atomically)
        return not lists

    def gave_up(self, jid, minion):
        """
        Remember that a return of ``minion`` for ``jid`` was waited for in vain.
        """
        if len(self._given_up) >= 4096:
            self._given_up.clear()
        self._given_up.add((jid, minion))

    def fun(self, jid):
        """
        The function of a job, or ``None``: read once per job (a job's
        function never changes), not once per return.
        """
        fun = self._funs.get(jid)
        if fun is None:
            fun = (self.load(jid, minions=False) or {}).get("fun")
            if fun is not None:
                if len(self._funs) >= 1024:
                    self._funs.clear()
                self._funs[jid] = fun
        return fun

    def load_once(self, jid):
        """
        The job's load the first time it is found here, then ``None``: a
        job's load is stored with its first return, not with each of them.
        Several reactor threads may still read it at once; storing it twice
        is harmless (the first copy wins).
        """
        if jid in self._loads_given:
            return None
        load = self.load(jid)
        if load is not None:
            if len(self._loads_given) >= 4096:
                self._loads_given.clear()
            self._loads_given.add(jid)
        return load

    def load(self, jid, minions=True):
        load = self._read(jid, ".load.p")
        if minions and load is not None and "minions" not in load:
            minions = self._read(jid, ".minions.p")
            if minions is not None:
                load["minions"] = sorted(minions)
        return load


def wait_for(read, timeout):
    """
    ``read()`` until it gives something other than ``None`` or ``timeout``
    seconds pass: the master writes its job cache just after it fires the event.
    """
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        found = read()
        left = deadline - time.monotonic()
        if found is not None or left <= 0:
            return found
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.25)
