"""
The spool: rows the database could not take, one fsynced file each under
``spool_dir``, safe for any number of threads and processes (each file is
written whole under a temporary name, then renamed; writing a row back twice
is a no-op), and its ``dead`` folder for rows even the dead-letter table refused.
"""

import json
import os
import time
import uuid

from saltext.eventstore.rows import ROW_TYPES, TABLES


class Spool:
    def __init__(self, path):
        self.path = path
        self.dead = os.path.join(path, "dead")

    def put(self, row, folder=None):
        folder = folder or self.path
        os.makedirs(folder, mode=0o700, exist_ok=True)
        table, _ = TABLES[type(row)]
        # Oldest first by name: nanoseconds, then a random part for uniqueness;
        # dead letters by jid, so that query() finds them.
        first = row.jid if folder == self.dead else f"{time.time_ns():020d}"
        name = f"{first}-{uuid.uuid4().hex[:12]}-{table}.json"
        temp = os.path.join(folder, f".{name}.tmp")
        fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(fd, json.dumps({"table": table, "row": list(row)}).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, os.path.join(folder, name))
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def check_writable(self):
        """
        Write, fsync and remove a small file in the spool folder (or, before
        the first row made it, in its parent): raises ``OSError`` when a row
        could not be spooled (disk full, read-only, not a folder).  Creates
        nothing that stays: salt-run may run as another user than the master.
        """
        folder = self.path
        if not os.path.isdir(folder):
            if os.path.lexists(folder):
                raise NotADirectoryError(f"{folder} is not a folder")
            folder = os.path.dirname(folder) or "."
        probe = os.path.join(folder, f".eventstore-probe-{uuid.uuid4().hex[:12]}.tmp")
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)

    def names(self, limit=None, folder=None):
        try:
            names = sorted(
                entry.name
                for entry in os.scandir(folder or self.path)
                if entry.name.endswith(".json") and entry.is_file()
            )
        except (FileNotFoundError, NotADirectoryError):
            return []  # nothing spooled yet, or no spool (status says it cannot be written)
        return names if limit is None else names[:limit]

    def read(self, name, folder=None):
        """
        The row spooled as ``name``, or ``None`` when another thread or process
        has written it back already.
        """
        try:
            with open(os.path.join(folder or self.path, name), encoding="utf-8") as handle:
                spooled = json.load(handle)
        except FileNotFoundError:
            return None
        return ROW_TYPES[spooled["table"]](*spooled["row"])

    def remove(self, name):
        try:
            os.unlink(os.path.join(self.path, name))
        except FileNotFoundError:
            pass
