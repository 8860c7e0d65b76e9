"""
The decisions of catch-up rounds: their settings, which job folders a round
looks at, when the next is due, and where a round that had more to do stops.
"""

import pytest
from saltext.eventstore import catchup, config


def settings(**own):
    return config.catch_up_settings({"cachedir": "/var/cache/salt/master", "eventstore": own})


def test_catch_up_is_on_by_default_every_minute_for_returns_a_minute_old():
    got = settings()
    assert (got.enabled, got.interval, got.after, got.max_jobs) == (True, 60, 60, 500)
    assert got.state_path == "/var/cache/salt/master/eventstore_catch_up.json"


def test_catch_up_can_be_turned_off():
    assert settings(catch_up=False).enabled is False


@pytest.mark.parametrize(
    "opts", [{"master_job_cache": "mysql"}, {"ext_job_cache": "mysql"}, {"job_cache": False}]
)
def test_catch_up_is_off_without_returns_in_local_cache(opts):
    assert config.catch_up_settings(opts).enabled is False


@pytest.mark.parametrize(
    "key, value", [("catch_up_interval", 0), ("catch_up_after", -1), ("catch_up_max_jobs", "many")]
)
def test_a_setting_that_is_no_positive_number_is_refused_by_name(key, value):
    with pytest.raises(ValueError, match=key):
        settings(**{key: value})


def test_the_first_round_ever_looks_at_the_whole_job_cache():
    assert catchup.catch_up_window({}, settings(), now=1000.0) == (-1.0, 940.0)


def test_a_round_looks_again_a_little_before_where_the_last_one_ended():
    low, _ = catchup.catch_up_window({"watermark": 900.0}, settings(), now=1000.0)
    assert low == 900.0 - catchup.CATCH_UP_OVERLAP


def test_a_round_after_one_that_stopped_short_goes_on_exactly_where_it_stopped():
    low, _ = catchup.catch_up_window({"watermark": 900.0, "cut": True}, settings(), now=1000.0)
    assert low == 900.0


def test_folders_changed_within_catch_up_after_are_left_to_the_live_path():
    _, high = catchup.catch_up_window({}, settings(catch_up_after=30), now=1000.0)
    assert high == 970.0


def test_a_round_is_due_when_none_ran_or_its_time_came():
    assert catchup.catch_up_due({}, now=1.0)
    assert not catchup.catch_up_due({"next_round": 100.0}, now=99.0)
    assert catchup.catch_up_due({"next_round": 100.0}, now=100.0)


def test_a_cut_does_not_part_folders_of_one_moment():
    changed = [(1, "a"), (2, "b"), (3, "c"), (3, "d"), (4, "e")]
    assert catchup.cut_between_times(changed, 3) == [(1, "a"), (2, "b")]


def test_folders_of_one_moment_more_than_a_round_takes_go_together():
    changed = [(3, "a"), (3, "b"), (3, "c"), (4, "d")]
    assert catchup.cut_between_times(changed, 2) == [(3, "a"), (3, "b"), (3, "c")]
