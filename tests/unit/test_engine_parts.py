"""
The engine's own parts: how Salt loads it, what it lets onto its queue, how it
cuts the queue into batches.  tests/e2e/test_engine.py runs it in a real master.
"""

import importlib.util
import queue

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
    "tag", ["salt/job/20261126120000000000/new", "salt/job/20261126120000000000/ret/web1"]
)
def test_job_loads_and_returns_pass_the_prefilter(engine, tag):
    assert engine._job_tag(raw(tag)) == tag.encode()


@pytest.mark.parametrize(
    "tag", ["salt/job/20261126120000000000/prog/web1/0", "salt/job/x/publish", "salt/auth", "new"]
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
