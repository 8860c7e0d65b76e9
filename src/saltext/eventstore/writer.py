"""
The writer: rows go to the database, or to the spool while it is down, or
to the dead letters when the database refuses them as such.  Owns the
outage state of one loaded runner (why the database is down, when to try it
again, whether the spool may hold rows) and the write-back of the spool.
"""

import logging
import threading
import time

from saltext.eventstore.rows import (
    EVENT_LETTER_PREFIX,
    VERDICTS,
    DeadLetter,
    dead_letter,
    oversize,
)
from saltext.eventstore.store import CONFLICT_RETRIES

log = logging.getLogger(__name__)

#: Rows written back from the spool per successful store.
REPLAY_BATCH = 100


class Writer:
    """
    Writes rows, deciding between the database, the spool and the dead
    letters.  While the database is down, rows go straight to the spool and
    only one thread at a time, after a pause that grows from 1 s to 30 s,
    tries the database again.
    """

    def __init__(self, db, spool, first_pause=1.0, longest_pause=30.0):
        self.db = db
        self.spool = spool
        # Seconds the database is left alone after a failed try, doubling per
        # failure up to ``longest_pause``; settable for tests, which must not
        # race the clock.
        self.first_pause = first_pause
        self.longest_pause = longest_pause
        self._lock = threading.Lock()
        self._probe = threading.Lock()
        self._replaying = threading.Lock()
        self._outage = None  # why the database is down, while it is
        self._retry_at = 0.0
        self._pause = 0.0
        # Unknown at start (an earlier process may have spooled): look once.
        self._spool_pending = True

    @property
    def outage(self):
        """
        Why the database is down, as this process last found it, or ``None``.
        """
        return self._outage

    def write(self, row):
        """
        Write one row: ``stored``, ``duplicate``, ``spooled`` or ``dead-lettered``.
        """
        counts = self.write_many([row])
        return next(verdict for verdict, count in counts.items() if count)

    def write_many(self, rows):
        """
        Write rows, each table's in one transaction (row by row only when the
        database refuses one of them); how many were ``stored``, ``duplicate``,
        ``spooled`` and ``dead-lettered``.  Raises only when neither the
        database nor the spool takes them.
        """
        counts = dict.fromkeys(VERDICTS, 0)
        tables = {}
        for row in rows:
            reason = None if isinstance(row, DeadLetter) else oversize(row)
            if isinstance(row, DeadLetter) or reason:
                counts[self._keep_dead(dead_letter(row, reason) if reason else row)] += 1
            else:
                tables.setdefault(type(row), []).append(row)
        for batch in tables.values():
            self._write_batch(batch, counts)
        if counts["stored"] or counts["duplicate"]:
            self.replay(REPLAY_BATCH)
        return counts

    def _write_batch(self, batch, counts):
        # While the database is down, only the thread that claims the probe
        # tries it, after the pause; the others spool.
        probing = self._outage is not None and self._claim_probe()
        if self._outage is not None and not probing:
            self._spool_all(batch, counts)
            return
        try:
            added, dead = self._insert_rows(batch)
        except Exception as exc:  # pylint: disable=broad-except
            self._went_down(exc)
            self._spool_all(batch, counts)
            return
        finally:
            if probing:
                self._probe.release()
        self._came_up()
        counts["stored"] += added
        counts["dead-lettered"] += dead
        counts["duplicate"] += len(batch) - added - dead

    def _spool_all(self, rows, counts):
        for row in rows:
            self._spool(row)
            counts["spooled"] += 1

    def _claim_probe(self):
        # After the pause, one thread tries the database; the others spool.
        with self._lock:
            if time.monotonic() < self._retry_at:
                return False
        return self._probe.acquire(blocking=False)

    def _went_down(self, exc):
        if self.db.is_conflict(exc):
            # Not down: these rows lost to other transactions every time.  They
            # wait in the spool for the next stored row, without a pause.
            log.warning(
                "eventstore: spooling rows that conflicted %d times in a row with other"
                " writers of %s (%s); they are written back with the next stored row",
                CONFLICT_RETRIES + 1,
                self.db.describe(),
                exc,
            )
            self._spool_pending = True
            return
        with self._lock:
            if self._outage is None:
                log.warning(
                    "eventstore: %s is unavailable (%s); spooling rows to %s until it is back",
                    self.db.describe(),
                    exc,
                    self.spool.path,
                )
                self._outage = str(exc)
            self._pause = min(max(self._pause * 2, self.first_pause), self.longest_pause)
            self._retry_at = time.monotonic() + self._pause

    def _came_up(self):
        with self._lock:
            if self._outage is None:
                return
            log.warning("eventstore: %s is back; writing the spool back", self.db.describe())
            self._outage, self._pause = None, 0.0

    def _spool(self, row):
        self.spool.put(row)
        self._spool_pending = True

    def _keep_dead(self, letter):
        """
        Keep a row the database will not take in the dead letters (or, when even
        that table refuses it, in the spool's ``dead`` folder).
        """
        if letter.jid.startswith(EVENT_LETTER_PREFIX):
            what = f"event {letter.fun!r}... from {letter.id or 'the master'} ({letter.jid})"
        else:
            what = f"{f'return of {letter.id}' if letter.id else 'load'} of job {letter.jid}"
        log.error("eventstore: keeping the %s as a dead letter: %s", what, letter.reason)
        if self._outage is not None:
            self._spool(letter)
            return "dead-lettered"
        try:
            self.db.insert([letter])
        except Exception as exc:  # pylint: disable=broad-except
            if self.db.is_row_error(exc):
                self.spool.put(letter, folder=self.spool.dead)
            else:
                self._went_down(exc)
                self._spool(letter)
        return "dead-lettered"

    def replay(self, limit, look=False):
        """
        Write back up to ``limit`` spooled rows; how many were written back.
        One thread of a process replays at a time; another process may replay
        the same rows at once, which costs a duplicate no-op each.  ``look``:
        read the spool even if this process spooled nothing since it was empty.
        """
        if look:
            self._spool_pending = True
        if not self._spool_pending or not self._replaying.acquire(blocking=False):
            return 0
        try:
            # Cleared before looking, so a row spooled meanwhile sets it again.
            self._spool_pending = False
            names = self.spool.names(limit)
            if len(names) == limit:
                self._spool_pending = True
            batches = {}
            for name in names:
                row = self.spool.read(name)
                if row is not None:  # else another process wrote it back
                    batches.setdefault(type(row), []).append((name, row))
            done = 0
            for batch in batches.values():
                try:
                    self._insert_rows([row for _, row in batch])
                except Exception as exc:  # pylint: disable=broad-except
                    self._spool_pending = True
                    self._went_down(exc)
                    break
                for name, _ in batch:
                    self.spool.remove(name)
                done += len(batch)
            if done and not self.spool.names(1):
                log.warning("eventstore: the spool is written back to %s", self.db.describe())
            return done
        finally:
            self._replaying.release()

    def _insert_rows(self, rows):
        """
        Insert rows of one type in one transaction; if the database refuses one
        of them, row by row, keeping the refused ones as dead letters.  Returns
        how many were new and how many were dead-lettered.  Raises when the
        database is unavailable.
        """
        try:
            return self.db.insert(rows), 0
        except Exception as exc:  # pylint: disable=broad-except
            if not self.db.is_row_error(exc):
                raise
        # It answered: it is up, so the dead letters go to it, not the spool.
        self._came_up()
        added = dead = 0
        for row in rows:
            try:
                added += self.db.insert([row])
            except Exception as exc:  # pylint: disable=broad-except
                if not self.db.is_row_error(exc):
                    raise
                self._keep_dead(dead_letter(row, f"the database refused it: {exc}"))
                dead += 1
        return added, dead
