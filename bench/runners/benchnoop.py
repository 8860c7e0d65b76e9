"""
The benchmark's do-nothing runner: what a reactor reaction costs before the
runner does any work.  The bench points the same reactor SLS at it.
"""

import os


def store(tag, data):
    """
    Do nothing with the event but count it: one byte appended to the file
    named by the master option ``benchnoop_counter``, so the benchmark sees
    when the reactor is done.

    CLI Example:

    .. code-block:: bash

        salt-run benchnoop.store tag=x data='{}'
    """
    fd = os.open(__opts__["benchnoop_counter"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)
    return "ignored"
