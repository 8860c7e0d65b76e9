"""
eventstore.status: the store's health for admins and monitoring, on both backends.
"""

from runnerlib import new_event, ret_event, storing_events


def put_return(es, minion, alter_time):
    """A return stored at ``alter_time`` (UTC)."""
    tag, data = ret_event(minion=minion)
    es.store(tag, data)
    statement = es._store().sql("UPDATE `salt_returns` SET `alter_time` = %s WHERE `id` = %s")
    es._store().run(lambda cur: cur.execute(statement, (alter_time, minion)))


def test_status_of_a_working_store_is_healthy(es):
    report = es.status()
    assert (report["healthy"], report["problems"], report["schema"]) == (True, [], "ok")
    assert report["retcode"] == 0 and "retcode" not in es.__context__


def test_status_names_the_backend_database_and_server_version(es):
    report = es.status()
    assert report["backend"] == es._store().dialect
    assert report["database"] == es._store().describe()
    assert report["server_version"]


def test_status_counts_the_rows_of_each_table(es):
    es.store(*new_event())
    es.store(*ret_event(minion="web1"))
    es.store(*ret_event(minion="web2"))
    assert es.status()["rows"] == {"jids": 1, "salt_returns": 2, "salt_events": 0}


def test_status_says_when_the_last_return_was_stored(es):
    put_return(es, "web1", "2026-11-26 10:00:00")
    put_return(es, "web2", "2026-11-26 11:30:00")
    assert es.status()["last_return"] == "2026-11-26 11:30:00"


def test_status_without_returns_has_no_last_return(es):
    assert es.status()["last_return"] is None


def test_status_reports_exactly_the_documented_keys(es):
    # What monitoring reads (the status() docstring's keys): a change here is a change
    # of interface, made on purpose.
    assert list(es.status()) == [
        "healthy",
        "retcode",
        "version",
        "loaded_from",
        "backend",
        "database",
        "server_version",
        "schema",
        "rows",
        "last_return",
        "spool",
        "dead_letters",
        "catch_up",
        "problems",
    ]


def test_status_with_a_table_missing_is_unhealthy_and_fails(es):
    es._store().run(lambda cur: cur.execute(es._store().sql("DROP TABLE `salt_returns`")))
    report = es.status()
    assert report["healthy"] is False
    assert report["problems"] == [
        "table salt_returns is missing: salt-run eventstore.init makes it"
    ]
    assert report["rows"] == {"jids": 0, "salt_events": 0}
    assert report["retcode"] == es.__context__["retcode"] == 1


def test_status_without_salt_events_is_healthy_when_no_event_is_stored(es):
    es._store().run(lambda cur: cur.execute("DROP TABLE salt_events"))
    assert es.status()["healthy"] is True


def test_status_without_salt_events_is_unhealthy_when_events_are_stored(es):
    storing_events(es, "salt/beacon/*")
    es._store().run(lambda cur: cur.execute("DROP TABLE salt_events"))
    report = es.status()
    assert report["healthy"] is False
    assert "table salt_events is missing: salt-run eventstore.init makes it" in report["problems"]
