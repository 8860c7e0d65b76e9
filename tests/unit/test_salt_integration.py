"""
The runner and the reactor SLS as Salt itself loads and renders them (no daemons).
"""

import json

import pytest
import salt.config
import salt.loader
import salt.template
from runnerlib import JID, REACTOR_SLS, REPO, ret_event


@pytest.fixture
def master_opts(tmp_path):
    opts = salt.config.master_config(None)
    opts.update(
        cachedir=str(tmp_path / "cache"),
        runner_dirs=[str(REPO / "_runners")],
        file_client="local",
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
        "eventstore.init",
        "eventstore.query",
        "eventstore.store",
    }


def test_every_public_function_documents_a_cli_example(runners):
    for name in (n for n in runners if n.startswith("eventstore.")):
        assert "CLI Example:" in runners[name].__doc__, name
        assert f"salt-run {name}" in runners[name].__doc__, name


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


def test_reactor_sls_passes_keys_of_mixed_types(master_opts):
    tag, data = ret_event(ret={1: "one", "two": 2})
    high = render_reaction(master_opts, tag, data)
    args = high["eventstore_store"]["runner.eventstore.store"][0]["args"]
    assert args[1]["data"]["return"] == json.loads(json.dumps({1: "one", "two": 2}))


def test_reactor_sls_names_no_host_or_path():
    text = REACTOR_SLS.read_text()
    assert "/srv" not in text and "mysql" not in text and "localhost" not in text
