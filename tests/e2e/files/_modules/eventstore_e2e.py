"""
Returns that are hard to store, made by a real minion for the end-to-end tests
(tests/e2e/test_hostile_returns.py): the runner stores only returns the master
job cache holds, so hostile content has to come back from a genuine job.
Loaded by the package minion through ``module_dirs`` (tests/e2e/conftest.py).
"""


def a_function_whose_name_is_longer_than_the_fun_column():
    """Its full name, eventstore_e2e.<this>, is longer than varchar(50)."""
    return "long name"


def another_function_whose_name_is_longer_than_the_fun_column():
    """Another name longer than varchar(50): a newer cut name for query to skip."""
    return "another long name"


def nan():
    """The floats that JSON has no words for."""
    return {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def nested(depth):
    """A list nested ``depth`` lists deep, around the string "bottom"."""
    ret = "bottom"
    for _ in range(int(depth)):
        ret = [ret]
    return ret


def text():
    """A NUL inside a string and a character outside the BMP (4 bytes in UTF-8)."""
    return {"nul": "a\x00b", "emoji": "\U0001f600"}


def lone_surrogate():
    """A str no UTF-8 encoder takes as it is."""
    return "lone \udc80 surrogate"


def big(size):
    """A string of ``size`` x's."""
    return "x" * int(size)
