"""With CI=true a skipped test fails, so a CI run cannot go green without MySQL or Salt."""

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).parent.parent / "conftest.py"

# One inner test per way a test can skip. A skip before the test body (marker, fixture)
# happens in the setup phase, and a failed setup is counted by pytest as an error.
SKIPPING_TESTS = {
    "in_the_test_body": (
        "failed",
        """
        import pytest

        def test_it():
            pytest.skip("no MySQL here")
    """,
    ),
    "in_a_fixture": (
        "errors",
        """
        import pytest

        @pytest.fixture
        def database():
            pytest.skip("no MySQL here")

        def test_it(database):
            pass
    """,
    ),
    "by_a_skip_marker": (
        "errors",
        """
        import pytest

        @pytest.mark.skip(reason="no MySQL here")
        def test_it():
            pass
    """,
    ),
    "by_a_skipif_marker": (
        "errors",
        """
        import pytest

        @pytest.mark.skipif(True, reason="no MySQL here")
        def test_it():
            pass
    """,
    ),
}


@pytest.fixture
def inner(pytester, monkeypatch):
    """A pytester directory using the project's real conftest.py."""
    # Only pytest and our conftest are under test; installed plugins would cost ~1 s per run.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest(CONFTEST.read_text())
    return pytester


@pytest.mark.parametrize("way", SKIPPING_TESTS)
def test_a_skip_fails_when_ci_is_true(inner, monkeypatch, way):
    outcome, source = SKIPPING_TESTS[way]
    monkeypatch.setenv("CI", "true")
    inner.makepyfile(source)
    result = inner.runpytest()
    result.assert_outcomes(**{outcome: 1})


@pytest.mark.parametrize("way", SKIPPING_TESTS)
def test_a_skip_stays_a_skip_when_ci_is_unset(inner, monkeypatch, way):
    _, source = SKIPPING_TESTS[way]
    monkeypatch.delenv("CI", raising=False)
    inner.makepyfile(source)
    result = inner.runpytest()
    result.assert_outcomes(skipped=1)


def test_the_failure_says_skipped_in_ci_and_gives_the_reason(inner, monkeypatch):
    monkeypatch.setenv("CI", "true")
    inner.makepyfile(SKIPPING_TESTS["in_the_test_body"][1])
    result = inner.runpytest()
    result.stdout.fnmatch_lines(["*skipped in CI: no MySQL here*"])


def test_a_module_level_importorskip_fails_when_ci_is_true(inner, monkeypatch):
    monkeypatch.setenv("CI", "true")
    inner.makepyfile(
        """
        import pytest

        pytest.importorskip("module_that_does_not_exist")

        def test_it():
            pass
        """
    )
    result = inner.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*skipped in CI: *module_that_does_not_exist*"])


def test_an_xfail_stays_an_xfail_when_ci_is_true(inner, monkeypatch):
    monkeypatch.setenv("CI", "true")
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.xfail(reason="known bug")
        def test_it():
            assert False
        """
    )
    result = inner.runpytest()
    result.assert_outcomes(xfailed=1)


@pytest.mark.parametrize("value", ["True", "TRUE", "1", "yes", "On", " true "])
def test_a_skip_fails_for_every_usual_truthy_ci_value(inner, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    inner.makepyfile(SKIPPING_TESTS["in_the_test_body"][1])
    inner.runpytest().assert_outcomes(failed=1)


@pytest.mark.parametrize("value", ["", "false", "0", "no"])
def test_a_skip_stays_a_skip_for_a_falsy_ci_value(inner, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    inner.makepyfile(SKIPPING_TESTS["in_the_test_body"][1])
    inner.runpytest().assert_outcomes(skipped=1)
