"""
Which backend and options the master config selects.
"""

import pytest
from runnerlib import load_runner
from saltext.eventstore.config import resolve_config


def config(opts):
    return resolve_config(opts)


def test_no_mysql_keys_means_sqlite_in_the_cachedir():
    cfg = config({"cachedir": "/var/cache/salt/master"})
    assert cfg.backend == "sqlite"
    assert cfg.sqlite_path == "/var/cache/salt/master/eventstore.sqlite3"


def test_a_flat_mysql_key_selects_mysql_with_the_returners_defaults():
    cfg = config({"mysql.host": "db.example.com"})
    assert cfg.backend == "mysql"
    assert cfg.mysql == {
        "host": "db.example.com",
        "user": "salt",
        "pass": "salt",
        "db": "salt",
        "port": 3306,
        "ssl_ca": None,
        "ssl_cert": None,
        "ssl_key": None,
        "hosts": (("db.example.com", 3306),),
    }


def test_nested_mysql_dict_is_read():
    cfg = config({"mysql": {"host": "db1", "user": "u", "db": "salt_jobs"}})
    assert cfg.backend == "mysql"
    assert (cfg.mysql["host"], cfg.mysql["user"], cfg.mysql["db"]) == ("db1", "u", "salt_jobs")


def test_flat_key_wins_over_nested_dict():
    cfg = config({"mysql.host": "flat", "mysql": {"host": "nested"}})
    assert cfg.mysql["host"] == "flat"


def test_string_none_means_unset_as_in_the_returner():
    cfg = config({"mysql.host": "db1", "mysql.ssl_ca": "None"})
    assert cfg.mysql["ssl_ca"] is None


def test_port_given_as_text_becomes_a_number():
    cfg = config({"mysql.port": "3307"})
    assert cfg.mysql["port"] == 3307


def test_explicit_backend_wins_over_mysql_keys():
    cfg = config({"mysql.host": "db1", "eventstore": {"backend": "sqlite"}, "cachedir": "/c"})
    assert cfg.backend == "sqlite"


def test_sqlite_path_can_be_set():
    cfg = config({"eventstore": {"sqlite_path": "/srv/returns.db"}})
    assert cfg.sqlite_path == "/srv/returns.db"


def test_find_job_and_eventstores_own_runner_jobs_are_always_ignored():
    cfg = config({"eventstore": {"ignore_funs": ["test.ping"]}})
    assert cfg.ignore_funs[:2] == ("saltutil.find_job", "runner.eventstore.*")
    assert cfg.ignore_funs[-1] == "test.ping"


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="backend must be one of mysql, sqlite, postgres"):
        config({"eventstore": {"backend": "oracle"}})


def test_virtual_names_the_unknown_backend():
    es = load_runner({"eventstore": {"backend": "oracle"}})
    loaded, reason = es.__virtual__()
    assert loaded is False
    assert "oracle" in reason


def test_pgjsonb_keys_select_postgres_with_the_returners_defaults():
    cfg = config({"returner.pgjsonb.host": "pg1", "returner.pgjsonb.pass": "None"})
    assert cfg.backend == "postgres"
    assert cfg.postgres == {
        "host": "pg1",
        "user": "salt",
        "pass": None,
        "db": "salt",
        "port": 5432,
        "sslmode": None,
        "sslrootcert": None,
        "sslcert": None,
        "sslkey": None,
        "sslcrl": None,
        "connect_timeout": None,
    }


def test_backend_postgres_alone_uses_the_pgjsonb_defaults():
    cfg = config({"eventstore": {"backend": "postgres"}})
    assert (cfg.backend, cfg.postgres["host"], cfg.postgres["port"]) == (
        "postgres",
        "localhost",
        5432,
    )


def test_pgjsonb_port_and_connect_timeout_given_as_strings_are_numbers():
    cfg = config({"returner.pgjsonb.port": "5433", "returner.pgjsonb.connect_timeout": "4"})
    assert (cfg.postgres["port"], cfg.postgres["connect_timeout"]) == (5433, 4)


def test_mysql_and_pgjsonb_keys_together_need_an_explicit_backend():
    both = {"mysql.host": "db1", "returner.pgjsonb.host": "pg1"}
    with pytest.raises(ValueError, match="eventstore: backend"):
        config(both)
    assert config(dict(both, eventstore={"backend": "postgres"})).backend == "postgres"


def test_postgres_hosts_become_libpqs_host_and_port_lists():
    cfg = config(
        {"eventstore": {"backend": "postgres", "postgres_hosts": ["pg1", "pg2:5433", "[::1]:5434"]}}
    )
    assert (cfg.postgres["host"], cfg.postgres["port"]) == ("pg1,pg2,::1", "5432,5433,5434")


def test_postgres_hosts_take_a_bare_ipv6_address_without_a_port():
    cfg = config({"eventstore": {"backend": "postgres", "postgres_hosts": "fe80::1, pg2"}})
    assert (cfg.postgres["host"], cfg.postgres["port"]) == ("fe80::1,pg2", "5432,5432")


def test_virtual_says_psycopg_is_missing_for_the_postgres_backend():
    es = load_runner({"returner.pgjsonb.host": "pg1"})
    es.lib.store_postgres.HAS_PSYCOPG = False  # as on a master without the driver
    loaded, reason = es.__virtual__()
    assert loaded is False
    assert "psycopg" in reason and "salt-pip install" in reason


def test_virtual_loads_mysql_without_psycopg():
    es = load_runner({"mysql.host": "db1"})
    es.lib.store_postgres.HAS_PSYCOPG = False
    assert es.__virtual__() == "eventstore"


def test_virtual_says_pymysql_is_missing_for_the_mysql_backend():
    es = load_runner({"mysql.host": "db1"})
    es.lib.store_mysql.HAS_PYMYSQL = False  # as on a master without the driver
    loaded, reason = es.__virtual__()
    assert loaded is False
    assert "PyMySQL" in reason and "salt-pip install pymysql" in reason


def test_virtual_loads_sqlite_without_pymysql():
    es = load_runner({"cachedir": "/tmp"})
    es.lib.store_mysql.HAS_PYMYSQL = False
    assert es.__virtual__() == "eventstore"


def test_a_master_with_an_ext_job_cache_does_not_verify():
    # The master then writes no returns to local_cache: each would be refused.
    assert config({"ext_job_cache": "redis"}).verify_returns is False
