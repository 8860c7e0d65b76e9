"""
The seed's listener, the baseline of engine mode: a process on the master bus
that writes each job return with one INSERT and one COMMIT (PyMySQL), as the
project's starting script did.  No verification, no batching, no spool.

    python bench/seed_listener.py <master config file> <mysql url>
"""

import json
import sys
import urllib.parse

import pymysql
import salt.config
import salt.utils.event

INSERT = (
    "INSERT INTO `salt_returns` (`fun`, `jid`, `return`, `id`, `success`, `full_ret`)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)


def main(config_file, url):
    opts = salt.config.master_config(config_file)
    db = urllib.parse.urlsplit(url)
    conn = pymysql.connect(
        host=db.hostname,
        port=db.port,
        user=db.username,
        password=db.password or "",
        database=db.path.lstrip("/"),
        charset="utf8mb4",
        autocommit=False,
    )
    bus = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)
    print("listening", flush=True)
    for event in bus.iter_events(tag="salt/job/", full=True):
        tag, data = event["tag"], event["data"]
        if "/ret/" not in tag:
            continue
        with conn.cursor() as cur:
            cur.execute(
                INSERT,
                (
                    data.get("fun"),
                    data.get("jid"),
                    json.dumps(data.get("return")),
                    data.get("id"),
                    "1" if data.get("success") else "0",
                    json.dumps(data),
                ),
            )
        conn.commit()


if __name__ == "__main__":
    main(*sys.argv[1:3])
