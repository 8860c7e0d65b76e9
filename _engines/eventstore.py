"""
Store job returns from the master's event bus in batches: the eventstore
runner's storage without the reactor's cost per event, for masters whose
return rate is above what the reactor handles (a runner reaction costs the
reactor about 20 ms of one core: some 40 to 60 returns a second).

The engine is a reader and a writer in one master process.  The reader takes
``salt/job/<jid>/new`` and ``salt/job/<jid>/ret/<minion>`` events, the
results of runner and wheel jobs (``salt/run/<jid>/ret``,
``salt/wheel/<jid>/ret``), and the events whose tags match ``eventstore:
events`` (stored in ``salt_events``, as the mysql returner's ``event_return``
does) off the bus into a bounded queue; the writer hands them, up to
``batch_size`` at a time,
to the runner function ``eventstore.store_events``, which checks, builds and
writes the rows exactly as ``eventstore.store`` does for the reactor (the same
tables, one row per (jid, minion), returns checked against and completed from
the master job cache, the spool while the database is down), each table's rows
in one transaction.

:depends: the eventstore runner (``_runners/eventstore.py`` and the package
    it imports), synced too, or both installed as the saltext-eventstore
    package.  The engine reads the bus; storing is the runner's
    (``store_events``), so one implementation serves both modes.

Installation
------------

Installed as the saltext-eventstore package, the engine and the runner are
there already.  Synced from ``file_roots``: copy this file to
``_engines/eventstore.py`` and the runner to ``_runners/eventstore.py`` under
a ``file_roots`` directory, with the package it imports (``src/saltext`` of
the release) as ``_runners/saltext/``, then:

.. code-block:: bash

    salt-run saltutil.sync_runners
    salt-run saltutil.sync_engines
    salt-run eventstore.init

and add to the master config (the runner's settings, ``mysql.*``, ``returner.pgjsonb.*`` and
``eventstore:``, apply as they are), then restart the master:

.. code-block:: yaml

    engines:
      - eventstore:
          batch_size: 500     # events stored in one call, one transaction per table, at most
          max_delay: 0.2      # seconds the first event of a batch waits for more, at most
          queue_mib: 256      # MiB of events read but not yet stored, at most; then the reader waits
          stop_timeout: 3     # seconds to store what is queued when the master stops
          store: True         # False: catch-up rounds only (the reactor stores the returns)

Drop the ``salt/job/*`` lines of the eventstore reactor when you enable the
engine: both at once store every return once (rows are unique per (jid,
minion)), but the reactor's cost per event stays.

Catch-up
--------

The engine also starts the runner's catch-up rounds (``eventstore.catch_up``)
in its process when the master starts: what the job cache holds and the
database lacks (returns that arrived while the master was down, the spool) is
stored without waiting for the next job.  A master whose reactor stores the
returns runs the engine for this alone:

.. code-block:: yaml

    engines:
      - eventstore:
          store: False

Back-pressure
-------------

The reader keeps events as the bus delivers them (msgpack bytes, the tag read
without decoding the rest), so it drains the master's publisher much faster
than the writer stores, and a burst waits here rather than in the publisher.
When the database is slower than the bus for long, the queue fills and the
reader stops reading: memory stays bounded by ``queue_mib`` (plus the batch
being written, decoded).  The events not read yet then wait in the master's
event publisher, which buffers them for this subscriber (unbounded in memory
unless ``ipc_write_buffer`` is set) and drops the subscriber when more than
``pub_server_write_queue_size`` (10,000) writes wait for it, or one waits
longer than ``publish_drain_timeout`` (60 s).  The engine then reconnects;
returns of that gap are still in the job cache, and ``salt-run
eventstore.backfill`` copies them.  The reactor behaves differently: it never
stops reading, and drops reactions once ``reactor_worker_hwm`` wait.  While
the database is down the rows are spooled to disk, so the writer keeps pace at
the spool's speed.
"""

import collections
import fnmatch
import logging
import queue
import re
import signal
import sys
import threading
import time

import salt.utils.event

try:
    from tornado.iostream import StreamClosedError
except ImportError:  # pragma: no cover - tornado is a dependency of every Salt
    StreamClosedError = OSError

log = logging.getLogger(__name__)

__virtualname__ = "eventstore"

#: What the runner stores; every other tag stays off the queue.  The runner
#: decides what is a job event; this only has to let all of those through.
JOB_TAG_PREFIX = b"salt/job/"
#: Where the master announces its runner and wheel jobs' results
#: (``salt/run/<jid>/ret``): the runner stores them too, but eventstore's own.
MASTER_JOB_TAG_PREFIXES = (b"salt/run/", b"salt/wheel/")
TAGEND = salt.utils.event.TAGEND.encode()

_STOP = b""  # no event is empty


def __virtual__():
    if __opts__.get("__role") != "master":
        return False, "the eventstore engine runs on a master"
    return __virtualname__


def _job_tag(raw):
    """
    The tag of a raw event (``tag``, ``TAGEND``, msgpack data) when it is a
    job's load or return, or a runner or wheel job's result, else ``None``:
    read without decoding the data.
    """
    if raw.startswith(JOB_TAG_PREFIX):
        tag = raw[: raw.find(TAGEND)]
        return tag if tag.endswith(b"/new") or b"/ret/" in tag else None
    if raw.startswith(MASTER_JOB_TAG_PREFIXES):
        tag = raw[: raw.find(TAGEND)]
        return tag if tag.endswith(b"/ret") else None
    return None


def _event_pattern(opts):
    """
    One regular expression for the ``eventstore: events`` globs (a list, or
    one), or ``None`` when there are none: the default stores no events.
    """
    own = opts.get("eventstore")
    globs = own.get("events") if isinstance(own, dict) else None
    globs = [globs] if isinstance(globs, str) else globs
    if not isinstance(globs, (list, tuple)):
        return None
    globs = [glob for glob in globs if isinstance(glob, str)]
    return re.compile("|".join(map(fnmatch.translate, globs))) if globs else None


def _stored_tag(raw, events):
    """
    The tag of a raw event when the runner stores it: a job's load or
    return, or an event whose tag matches the ``events`` pattern (from
    :py:func:`_event_pattern`); else ``None``.  Only the tag is decoded.
    """
    tag = _job_tag(raw)
    if tag or events is None or raw.startswith((JOB_TAG_PREFIX, *MASTER_JOB_TAG_PREFIXES)):
        return tag
    tag = raw[: raw.find(TAGEND)]
    return tag if events.match(tag.decode("utf-8", "surrogateescape")) else None


class _ByteQueue:
    """
    Raw events waiting for the writer, at most ``limit`` bytes of them (one
    bigger event still goes in, alone): ``put`` waits while it is full.
    """

    def __init__(self, limit):
        self.limit = limit
        self.size = 0
        self._items = collections.deque()
        self._changed = threading.Condition()

    def put(self, item, timeout=None):
        with self._changed:
            room = lambda: not self.size or self.size + len(item) <= self.limit  # noqa: E731
            if not self._changed.wait_for(room, timeout):
                raise queue.Full
            self._items.append(item)
            self.size += len(item)
            self._changed.notify_all()

    def get(self, timeout=None):
        with self._changed:
            if not self._changed.wait_for(lambda: self._items, timeout):
                raise queue.Empty
            item = self._items.popleft()
            self.size -= len(item)
            self._changed.notify_all()
            return item

    def qsize(self):
        return len(self._items)


def start(batch_size=500, max_delay=0.2, queue_mib=256, stop_timeout=3, store=True):
    """
    Read job events off the master bus and store them in batches until the
    master stops; and start the runner's catch-up rounds, which store what
    the job cache holds and the database lacks.  ``store: False`` runs the
    catch-up rounds only, for masters whose reactor stores the returns.
    """
    if "eventstore.store_events" not in __runners__:
        log.error(
            "eventstore engine: the eventstore runner is not loaded: "
            "salt-run saltutil.sync_runners (or install saltext-eventstore), then restart the master"
        )
        return
    # An engine is what the master starts by itself: the catch-up thread
    # starts here, with the master, even before the first job.
    if "eventstore.catch_up" in __runners__:
        __runners__["eventstore.catch_up"](background=True)
    if not store:
        _wait_for_sigterm()
        return
    store_events = __runners__["eventstore.store_events"]
    # The writer is busy with the CPU, the reader mostly waits on the socket:
    # with Python's 5 ms GIL switch interval, each wake-up of the reader waits
    # for the writer, and the reader falls behind the publisher.
    sys.setswitchinterval(0.0005)
    events = _ByteQueue(int(float(queue_mib) * 1024 * 1024))
    writer = threading.Thread(
        target=_write,
        args=(events, store_events, int(batch_size), float(max_delay)),
        name="eventstore-writer",
        daemon=True,
    )
    writer.start()
    stopping = threading.Event()
    salts_handler = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        stopping.set()

    # Salt's handler exits the process at once; first store what is queued.
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        _read(events, stopping)
    finally:
        log.info(
            "eventstore engine: stopping; storing the %d events queued, for %s s at most",
            events.qsize(),
            stop_timeout,
        )
        _drain(events, writer, float(stop_timeout))
    if callable(salts_handler):
        salts_handler(signal.SIGTERM, None)


def _wait_for_sigterm():
    stopping = threading.Event()
    salts_handler = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    while not stopping.wait(1):
        pass
    if callable(salts_handler):
        salts_handler(signal.SIGTERM, None)


def _drain(events, writer, timeout):
    deadline = time.monotonic() + timeout
    try:
        events.put(_STOP, timeout=timeout)
    except queue.Full:
        pass
    writer.join(max(deadline - time.monotonic(), 0))
    if writer.is_alive():
        log.warning(
            "eventstore engine: stopping with about %d events not stored; "
            "salt-run eventstore.backfill copies them from the job cache",
            events.qsize(),
        )


def _read(events, stopping):
    pattern = _event_pattern(__opts__)
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=True) as bus:
        while not stopping.is_set():
            raw = _receive(bus)
            if raw and _stored_tag(raw, pattern):
                _queue(events, raw, stopping)


def _queue(events, raw, stopping):
    """
    Put ``raw`` on the queue, waiting while it is full (back-pressure, not
    memory: the events not read yet wait in the publisher), unless the
    master stops meanwhile: then the event is left to backfill.
    """
    try:
        events.put(raw, timeout=0)
        return
    except queue.Full:
        log.debug("eventstore engine: the queue is full (%d bytes); reading paused", events.size)
    while not stopping.is_set():
        try:
            events.put(raw, timeout=1)
            return
        except queue.Full:
            continue


def _receive(bus, timeout=1):
    """
    One raw event from the bus, or ``None``: what ``get_event`` reads before
    it decodes anything (``recv`` since Salt 3007, ``read`` before).
    """
    try:
        if not bus.cpub and not bus.connect_pub(timeout=timeout):
            time.sleep(timeout)
            return None
        subscriber = bus.subscriber
        receive = getattr(subscriber, "recv", None) or subscriber.read
        return receive(timeout=timeout)
    except StreamClosedError:
        bus.close_pub()  # reconnected at the next call
        return None


def _write(events, store_events, batch_size, max_delay):
    while True:
        raws, stop = _next_batch(events, batch_size, max_delay)
        batch = []
        for raw in raws:
            try:
                tag, data = salt.utils.event.SaltEvent.unpack(raw)
            except Exception:  # pylint: disable=broad-except
                log.warning("eventstore engine: skipping an event it cannot decode")
                continue
            batch.append({"tag": tag, "data": data})
        if batch:
            try:
                counts = store_events(batch)
            except Exception:  # pylint: disable=broad-except
                # A bug, not an outage (the runner spools those): keep going.
                log.exception(
                    "eventstore engine: %d events not stored; salt-run eventstore.backfill "
                    "copies them from the job cache",
                    len(batch),
                )
            else:
                log.debug("eventstore engine: %s", counts)
        if stop:
            return


def _next_batch(events, batch_size, max_delay):
    """
    Up to ``batch_size`` events: the first one waited for as long as it
    takes, the others for ``max_delay`` seconds after it at most.  Also
    whether the reader has stopped.
    """
    first = events.get()
    if first == _STOP:
        return [], True
    batch = [first]
    deadline = time.monotonic() + max_delay
    while len(batch) < batch_size:
        try:
            event = events.get(timeout=max(deadline - time.monotonic(), 0))
        except queue.Empty:
            break
        if event == _STOP:
            return batch, True
        batch.append(event)
    return batch, False
