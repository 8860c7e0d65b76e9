"""
The times people type for since/until/before, and what they become: UTC
moments, and jid bounds for a range scan on the jid index.
"""

import datetime

import pytest
from saltext.eventstore import readback, times

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def at(*args):
    return datetime.datetime(*args, tzinfo=UTC)


def test_a_date_is_its_midnight_in_utc():
    assert times.parse_time("2026-11-26", NOW) == at(2026, 11, 26)


def test_a_date_and_time_without_seconds_is_utc():
    assert times.parse_time("2026-11-26 12:30", NOW) == at(2026, 11, 26, 12, 30)


def test_iso_8601_with_an_offset_is_turned_into_utc():
    assert times.parse_time("2026-11-26T12:30:00+01:00", NOW) == at(2026, 11, 26, 11, 30)


def test_iso_8601_with_z_is_utc():
    assert times.parse_time("2026-11-26T12:30:00Z", NOW) == at(2026, 11, 26, 12, 30)


def test_a_jid_is_its_start_time():
    assert times.parse_time("20261126123000000042", NOW) == at(2026, 11, 26, 12, 30, 0, 42)


def test_a_jid_as_salt_run_passes_it_an_int_is_its_start_time():
    # salt-run's YAML reads a bare jid as a number.
    assert times.parse_time(20261126123000000042, NOW) == at(2026, 11, 26, 12, 30, 0, 42)


def test_a_jid_with_a_unique_suffix_is_its_start_time():
    assert times.parse_time("20261126123000000042_4711", NOW) == at(2026, 11, 26, 12, 30, 0, 42)


@pytest.mark.parametrize(
    "age, delta",
    [
        ("45s", datetime.timedelta(seconds=45)),
        ("30m", datetime.timedelta(minutes=30)),
        ("2h", datetime.timedelta(hours=2)),
        ("3d", datetime.timedelta(days=3)),
        ("1w", datetime.timedelta(weeks=1)),
        ("2 H", datetime.timedelta(hours=2)),
    ],
)
def test_an_age_means_that_long_ago(age, delta):
    assert times.parse_time(age, NOW) == NOW - delta


def test_a_date_object_from_yaml_is_its_midnight():
    assert times.parse_time(datetime.date(2026, 11, 26), NOW) == at(2026, 11, 26)


def test_a_naive_datetime_is_utc():
    assert times.parse_time(datetime.datetime(2026, 11, 26, 8), NOW) == at(2026, 11, 26, 8)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "20261326120000000000", "5y", ""])
def test_anything_else_is_refused_naming_the_forms_that_work(text):
    with pytest.raises(ValueError, match="is not a time; give 2026-11-26"):
        times.parse_time(text, NOW)


def test_jid_range_since_is_the_lower_jid_bound():
    assert times.jid_range(since="2026-11-26", now=NOW) == ("20261126000000000000", None)


def test_jid_range_until_is_the_upper_jid_bound():
    assert times.jid_range(until="2h", now=NOW) == (None, "20261126100000000000")


def test_jid_range_takes_the_older_of_until_and_the_cursor():
    _, high = times.jid_range(until="2026-11-27", before="20261126090000000000", now=NOW)
    assert high == "20261126090000000000"


def test_jid_range_refuses_a_cursor_that_is_not_a_jid():
    with pytest.raises(ValueError, match="before='tomorrow' is not a jid"):
        times.jid_range(before="tomorrow", now=NOW)


def test_jid_range_names_the_argument_it_refuses():
    with pytest.raises(ValueError, match="^until: 'soon' is not a time"):
        times.jid_range(until="soon", now=NOW)


def test_globs_split_a_comma_separated_list():
    assert readback.parse_globs("test.*, pkg.install") == ("test.*", "pkg.install")


def test_globs_take_a_list_as_it_is():
    assert readback.parse_globs(["web*", "db1"]) == ("web*", "db1")


def test_a_list_target_matches_when_one_of_its_minions_does():
    assert readback.matches(["db1", "web2"], ("web*",))
    assert not readback.matches(["db1", "db2"], ("web*",))


def test_globs_match_case_sensitively_like_minion_ids():
    assert not readback.matches("Web1", ("web*",))
