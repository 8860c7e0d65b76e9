"""
The engine's own parts: how Salt loads it, what it lets onto its queue, how it
cuts the queue into batches.  tests/e2e/test_engine.py runs it in a real master.
"""

import importlib.util
import queue
import threading

import pytest
import salt.config
import salt.loader
import salt.payload
import salt.utils.event
from runnerlib import REPO

ENGINE_PATH = REPO / "_engines" / "eventstore.py"


@pytest.fixture
def engine():
    spec = importlib.util.spec_from_file_location("eventstore_engine", ENGINE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def queued(*items):
    events = queue.Queue()
    for item in items:
        events.put(item)
    return events


def test_salt_loads_the_engine_on_a_master(tmp_path):
    opts = salt.config.master_config(None)
    opts.update(cachedir=str(tmp_path), engines_dirs=[str(REPO / "_engines")])
    engines = salt.loader.engines(opts, {}, {}, salt.loader.utils(opts))
    assert "eventstore.start" in engines


def test_the_engine_documents_its_configuration(engine):
    for key in ("batch_size", "max_delay", "queue_mib", "stop_timeout", "engines:"):
        assert key in engine.__doc__, key


def raw(tag, data=None):
    """
    An event as the bus carries it: what the engine's reader queues.  Built
    by hand, as SaltEvent.pack (Salt 3007+) does and 3006's fire_event inline.
    """
    data = salt.payload.dumps(data or {"id": "web1"}, use_bin_type=True)
    return tag.encode() + salt.utils.event.TAGEND.encode() + data


@pytest.mark.parametrize(
    "tag",
    [
        "salt/job/20261126120000000000/new",
        "salt/job/20261126120000000000/ret/web1",
        "salt/run/20261126120000000000/ret",
        "salt/wheel/20261126120000000000/ret",
    ],
)
def test_job_loads_and_returns_and_runner_and_wheel_results_pass_the_prefilter(engine, tag):
    assert engine._job_tag(raw(tag)) == tag.encode()


@pytest.mark.parametrize(
    "tag",
    [
        "salt/job/20261126120000000000/prog/web1/0",
        "salt/job/x/publish",
        "salt/auth",
        "new",
        "salt/run/20261126120000000000/new",
        "salt/run/20261126120000000000/progress",
        "salt/run/20261126120000000000/args",
        "salt/wheel/20261126120000000000/new",
    ],
)
def test_other_events_stay_off_the_queue(engine, tag):
    assert engine._job_tag(raw(tag)) is None


def test_a_return_s_data_does_not_fool_the_prefilter(engine):
    assert engine._job_tag(raw("salt/auth", {"tag": "salt/job/1/ret/x"})) is None


def test_the_queue_counts_the_bytes_it_holds(engine):
    events = engine._ByteQueue(100)
    events.put(b"x" * 60)
    events.put(b"y" * 40)
    assert events.size == 100
    assert events.get() == b"x" * 60
    assert events.size == 40


def test_the_queue_takes_no_event_past_its_limit(engine):
    events = engine._ByteQueue(100)
    events.put(b"x" * 60)
    with pytest.raises(queue.Full):
        events.put(b"y" * 41, timeout=0)


def test_an_event_bigger_than_the_queue_goes_in_alone(engine):
    events = engine._ByteQueue(100)
    events.put(b"x" * 500)
    with pytest.raises(queue.Full):
        events.put(b"y", timeout=0)
    assert events.get() == b"x" * 500


def test_a_batch_holds_at_most_batch_size_events(engine):
    events = queued(*range(7))
    assert engine._next_batch(events, 3, 0.05) == ([0, 1, 2], False)
    assert engine._next_batch(events, 3, 0.05) == ([3, 4, 5], False)


def test_a_batch_takes_what_is_queued_when_fewer_than_batch_size_come(engine):
    assert engine._next_batch(queued(1, 2), 500, 0.05) == ([1, 2], False)


def test_the_reader_stopping_ends_the_last_batch(engine):
    events = queued(1, 2, engine._STOP, 3)
    assert engine._next_batch(events, 500, 0.05) == ([1, 2], True)


def test_the_reader_stopping_with_nothing_queued_is_an_empty_last_batch(engine):
    assert engine._next_batch(queued(engine._STOP), 500, 0.05) == ([], True)


def test_a_reader_waiting_on_a_full_queue_gives_up_when_the_master_stops(engine):
    events = engine._ByteQueue(100)
    events.put(b"x" * 100)
    stopping = threading.Event()
    reader = threading.Thread(target=engine._queue, args=(events, b"y" * 10, stopping), daemon=True)
    reader.start()
    stopping.set()
    reader.join(timeout=30)
    assert not reader.is_alive()
    assert events.qsize() == 1


class FakeBus:
    """A master event bus whose subscription the publisher closes once."""

    def __init__(self, engine, raws):
        self.engine, self.raws, self.cpub, self.connects = engine, list(raws), False, 0
        self.subscriber = self

    def connect_pub(self, timeout=None):
        self.cpub = True
        self.connects += 1
        return True

    def close_pub(self):
        self.cpub = False

    def recv(self, timeout=None):
        raw = self.raws.pop(0)
        if raw is None:
            raise self.engine.StreamClosedError()
        return raw


def test_the_reader_connects_again_after_the_publisher_closed_its_subscription(engine):
    bus = FakeBus(engine, [b"first", None, b"after"])
    received = [engine._receive(bus) for _ in range(3)]
    assert received == [b"first", None, b"after"]
    assert bus.connects == 2


def test_the_writer_carries_on_after_an_event_it_cannot_decode_and_a_failed_store(engine, caplog):
    stored = []

    def store_events(batch):
        if any(event["data"].get("id") == "fails" for event in batch):
            raise RuntimeError("a bug in the runner")
        stored.extend(event["data"]["id"] for event in batch)
        return {"stored": len(batch)}

    # batch_size 1: each event is a batch of its own.
    events = queued(
        b"salt/job/1/ret/x" + salt.utils.event.TAGEND.encode() + b"\xc1 not msgpack",
        raw("salt/job/1/ret/fails", {"id": "fails"}),
        raw("salt/job/1/ret/web1"),
        engine._STOP,
    )
    engine._write(events, store_events, 1, 0.05)
    assert stored == ["web1"]
    assert "skipping an event it cannot decode" in caplog.text
    assert "1 events not stored" in caplog.text
