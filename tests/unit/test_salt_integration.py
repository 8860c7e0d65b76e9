"""
The runner and the reactor SLS as Salt itself loads and renders them (no daemons).
"""

import inspect
import textwrap

import pytest
import salt.utils.yaml
import salt.config
import salt.loader
import salt.template
from runnerlib import JID, REACTOR_SLS, REPO, load_runner, new_event, ret_event


@pytest.fixture
def master_opts(tmp_path):
    opts = salt.config.master_config(None)
    opts.update(
        cachedir=str(tmp_path / "cache"),
        runner_dirs=[str(REPO / "_runners")],
        file_client="local",
        eventstore={"verify_returns": False},
    )
    return opts


@pytest.fixture
def runners(master_opts):
    return salt.loader.runner(master_opts, utils=salt.loader.utils(master_opts))


def render_reaction(master_opts, tag, data):
    renderers = salt.loader.render(master_opts, {})
    return salt.template.compile_template(
        str(REACTOR_SLS),
        renderers,
        master_opts["renderer"],
        master_opts["renderer_blacklist"],
        master_opts["renderer_whitelist"],
        tag=tag,
        data=data,
    )


def test_salt_loads_exactly_the_documented_functions(runners):
    assert {n for n in runners if n.startswith("eventstore.")} == {
        "eventstore.backfill",
        "eventstore.catch_up",
        "eventstore.events",
        "eventstore.init",
        "eventstore.install_reactor",
        "eventstore.jobs",
        "eventstore.migrate",
        "eventstore.prune",
        "eventstore.query",
        "eventstore.replay",
        "eventstore.status",
        "eventstore.store",
        "eventstore.store_events",
    }


def test_every_public_function_documents_a_cli_example(runners):
    for name in (n for n in runners if n.startswith("eventstore.")):
        assert "CLI Example:" in runners[name].__doc__, name
        assert f"salt-run {name}" in runners[name].__doc__, name


def test_documented_prune_schedule_calls_prune_with_arguments_it_takes(runners):
    doc = runners["eventstore.prune"].__doc__
    block = doc[doc.index("        schedule:") : doc.index("    CLI Example:")]
    entry = salt.utils.yaml.safe_load(textwrap.dedent(block))["schedule"]["eventstore_prune"]
    assert entry["function"] in runners
    inspect.signature(runners[entry["function"]]).bind(**entry["kwargs"])


def test_loaded_runner_stores_and_queries(runners):
    assert runners["eventstore.store"](*ret_event(ret="ok")) == "stored"
    assert runners["eventstore.query"](jid=JID) == {"web1": "ok"}


def test_reactor_sls_calls_store_with_tag_and_data(master_opts):
    tag, data = ret_event(ret={"stdout": "grüße \U0001f680", "nested": [1, {"k": None}]})
    high = render_reaction(master_opts, tag, data)
    assert high == {
        "eventstore_store": {"runner.eventstore.store": [{"args": [{"tag": tag}, {"data": data}]}]}
    }


def test_reactor_sls_passes_text_yaml_would_refuse(master_opts):
    tag, data = ret_event(ret="lone \udc80 surrogate, NUL \x00, tab\t")
    high = render_reaction(master_opts, tag, data)
    args = high["eventstore_store"]["runner.eventstore.store"][0]["args"]
    assert args[1]["data"]["return"] == "lone \udc80 surrogate, NUL \x00, tab\t"


@pytest.mark.parametrize(
    "ret",
    [{1: "one", "two": 2}, b"\x00\xff binary", (1, 2)],
    ids=["keys-of-mixed-types", "bytes", "tuple"],
)
def test_reactor_sls_passes_the_event_data_as_the_master_decoded_it(master_opts, ret):
    tag, data = ret_event(ret=ret)
    high = render_reaction(master_opts, tag, data)
    args = high["eventstore_store"]["runner.eventstore.store"][0]["args"]
    assert args[1]["data"]["return"] == ret


def starts_the_runner(master_opts, tag, data):
    """True when the reactor SLS renders a runner job for the event."""
    return render_reaction(master_opts, tag, data) != {}


@pytest.mark.parametrize(
    "tag_data",
    [ret_event(fun="saltutil.find_job", ret={}), new_event(fun="saltutil.find_job")],
    ids=["ret", "new"],
)
def test_reactor_sls_starts_no_runner_job_for_a_find_job_poll(master_opts, tag_data):
    assert not starts_the_runner(master_opts, *tag_data)


IGNORE_FUNS = [
    "test.*",
    "*.sleep",
    "mine.updat?",
    "cmd.run,test.ping",
    "lit\\*",
    "a.b",
    "[gs]rains.[!i]*",
]


@pytest.mark.parametrize(
    "fun",
    [
        "test.ping",
        "test.version",
        "tes.ping",
        "cmd.run",
        "system.sleep",
        "sleep",
        "mine.update",
        "mine.updated",
        "mine.updat",
        "a.b",
        "axb",
        "A.b",
        "lit\\x",
        "lit",
        "state.apply",
        "grains.get",
        "grains.items",
        "srains.x",
        "trains.x",
        ["cmd.run", "test.ping"],
        ["test.ping", "cmd.run"],
        ["cmd.run", "state.apply"],
    ],
)
def test_reactor_sls_ignores_exactly_the_functions_the_runner_ignores(master_opts, fun):
    master_opts["eventstore"]["ignore_funs"] = IGNORE_FUNS
    es = load_runner(master_opts)
    runner_ignores = es.lib.rows.is_ignored(
        es.lib.rows.fun_name(fun), es.lib.config.resolve_config(master_opts).ignore_funs
    )
    assert starts_the_runner(master_opts, *ret_event(fun=fun)) is not runner_ignores


def test_reactor_sls_reads_a_single_ignored_glob_as_the_runner_does(master_opts):
    master_opts["eventstore"]["ignore_funs"] = "test.*"
    assert load_runner(master_opts).config.resolve_config(master_opts).ignore_funs[-1] == "test.*"
    assert not starts_the_runner(master_opts, *ret_event(fun="test.ping"))


def test_reactor_sls_ignores_the_job_load_of_an_ignored_function(master_opts):
    master_opts["eventstore"]["ignore_funs"] = ["test.*"]
    assert not starts_the_runner(master_opts, *new_event(fun="test.ping"))


def test_reactor_sls_ignores_a_nested_return_load_of_an_ignored_function(master_opts):
    tag, data = ret_event(fun="saltutil.find_job")
    assert not starts_the_runner(master_opts, tag, {"data": data})


@pytest.mark.parametrize(
    "data",
    [
        "not a mapping",
        {"id": "web1", "return": True},
        {"id": "web1", "fun": 5, "return": True},
    ],
    ids=["not-a-mapping", "no-function", "function-not-a-name"],
)
def test_reactor_sls_leaves_an_event_it_cannot_read_to_the_runner(master_opts, data):
    assert starts_the_runner(master_opts, f"salt/job/{JID}/ret/web1", data)


@pytest.mark.parametrize(
    "ignore_funs", [None, {"test.ping": True}, 5], ids=["none", "mapping", "number"]
)
def test_reactor_sls_ignores_only_find_job_when_ignore_funs_is_not_a_list(master_opts, ignore_funs):
    master_opts["eventstore"]["ignore_funs"] = ignore_funs
    assert starts_the_runner(master_opts, *ret_event(fun="test.ping"))
    assert not starts_the_runner(master_opts, *ret_event(fun="saltutil.find_job"))


def test_reactor_sls_names_no_host_or_path():
    text = REACTOR_SLS.read_text()
    assert "/srv" not in text and "mysql" not in text and "localhost" not in text


def test_sql_files_are_the_runners_own_schema():
    # sql/*.sql are generated by `make sql`; the runner is the one source.
    from runnerlib import load_runner

    es = load_runner({})
    for dialect in ("mysql", "sqlite", "postgres"):
        assert (REPO / "sql" / f"{dialect}.sql").read_text() == es.lib.schema.schema_sql(dialect), (
            dialect
        )
