"""
The reactor SLS that ships with eventstore, put where the master's
``reactor:`` config names it (the runner's ``install_reactor``): for a
master that installed the saltext-eventstore package, whose SLS lies in a
folder that changes with the master's Python.
"""

import os
import uuid

from saltext.eventstore.failures import Failed


def shipped_reactor_sls(runner_file):
    """
    The reactor SLS that ships with this runner: ``reactor/eventstore.sls``
    next to its folder, as in the saltext-eventstore package
    (``saltext/eventstore/runners/``) and in a checkout (``_runners/``).
    """
    return os.path.join(os.path.dirname(os.path.dirname(runner_file)), "reactor", "eventstore.sls")


#: The events the reactor hands to eventstore: minions' returns, and runner
#: and wheel jobs' results (job loads are read from the job cache: no
#: ``salt/job/*/new`` line).
REACTOR_TAGS = ("salt/job/*/ret/*", "salt/run/*/ret", "salt/wheel/*/ret")


def reactor_config(path):
    """
    The master config lines that hand the events of ``REACTOR_TAGS`` to the
    reactor SLS at ``path``.
    """
    lines = ["reactor:"]
    for tag in REACTOR_TAGS:
        lines += [f"  - '{tag}':", f"    - {path}"]
    return "\n".join(lines)


def write_whole(path, text):
    """
    Write ``text`` to ``path`` (mode 0644) through a file renamed into place,
    so that the reactor never reads half of it.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def install_reactor(runner_file, version, path):
    """
    Write the reactor SLS shipped beside ``runner_file`` (eventstore
    ``version``'s) to ``path``; what the runner's ``install_reactor`` says.
    Raises :py:class:`Failed` when it writes nothing.
    """
    path = os.path.abspath(str(path))
    if not path.endswith(".sls"):
        raise Failed(f"{path} is no .sls file: not written")
    try:
        with open(shipped_reactor_sls(runner_file), encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        raise Failed(
            f"No reactor SLS ships with this runner ({runner_file}): "
            "copy reactor/eventstore.sls of eventstore's release instead"
        ) from None
    try:
        with open(path, encoding="utf-8") as handle:
            current = handle.read()
    except FileNotFoundError:
        current = None
    except (OSError, UnicodeDecodeError) as exc:
        raise Failed(f"Cannot read {path}: {exc}") from exc
    release = f"eventstore {version}'s reactor SLS"
    if current == text:
        verdict = f"{path} is {release} already"
    elif current is not None and "runner.eventstore." not in current:
        raise Failed(f"{path} exists and is not an eventstore reactor SLS: not overwritten")
    else:
        try:
            write_whole(path, text)
        except OSError as exc:
            raise Failed(f"Cannot write {path}: {exc}") from exc
        verdict = f"{'Wrote' if current is None else 'Updated'} {path}: {release}"
    return "\n".join(
        (verdict, "The master config needs (then restart the master):", reactor_config(path))
    )
