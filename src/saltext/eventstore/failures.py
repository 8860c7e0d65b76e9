"""
How a module tells the runner that a function failed, so that the runner
returns Salt's failure result (``{"Error": ..., "retcode": 1}``, which
``salt-run`` prints and exits 1 with): :py:class:`Failed`, and
:py:class:`Invalid` for arguments it cannot take.  (An event that cannot be
stored is no failure of a function: :py:class:`~saltext.eventstore.rows.Refused`.)
"""


class Failed(Exception):
    """
    A runner function could not do what it was asked: the message is what
    ``salt-run`` prints as the ``Error``, with exit code 1.
    """


class Invalid(Failed):
    """
    A runner function was given arguments it cannot take: ``salt-run``
    prints ``Invalid input:`` and why.
    """

    def __str__(self):
        return f"Invalid input: {self.args[0]}"
