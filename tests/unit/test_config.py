"""
Which backend and options the master config selects.
"""

import pytest
from runnerlib import load_runner


def config(opts):
    return load_runner(opts)._resolve_config(opts)


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


def test_find_job_is_always_ignored():
    cfg = config({"eventstore": {"ignore_funs": ["test.ping"]}})
    assert cfg.ignore_funs == ("saltutil.find_job", "test.ping")


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="backend must be mysql or sqlite"):
        config({"eventstore": {"backend": "postgres"}})


def test_virtual_names_the_unknown_backend():
    es = load_runner({"eventstore": {"backend": "postgres"}})
    loaded, reason = es.__virtual__()
    assert loaded is False
    assert "postgres" in reason


def test_virtual_says_pymysql_is_missing_for_the_mysql_backend():
    es = load_runner({"mysql.host": "db1"})
    es.HAS_PYMYSQL = False  # as on a master without the driver
    loaded, reason = es.__virtual__()
    assert loaded is False
    assert "PyMySQL" in reason and "salt-pip install pymysql" in reason


def test_virtual_loads_sqlite_without_pymysql():
    es = load_runner({"cachedir": "/tmp"})
    es.HAS_PYMYSQL = False
    assert es.__virtual__() == "eventstore"


def test_a_master_with_an_ext_job_cache_does_not_verify():
    # The master then writes no returns to local_cache: each would be refused.
    assert config({"ext_job_cache": "redis"}).verify_returns is False
