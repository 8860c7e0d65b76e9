#!jinja|json
{#
  The bench's "before" of the poll storm: eventstore's reactor SLS as it was
  until the SLS decided find_job polls and ignore_funs itself.  It hands
  every job load (salt/job/<jid>/new) and job return
  (salt/job/<jid>/ret/<minion>) seen on the master bus to the eventstore runner,
  which decides what to store.

  Written in JSON rather than YAML because the whole event is rendered into it:
  the JSON renderer reads any return back exactly as the minion sent it (YAML
  refuses some strings, e.g. lone surrogates) and parses big returns ten times
  faster.  sort_keys=False: a return whose keys mix types cannot be sorted.
-#}
{"eventstore_store": {"runner.eventstore.store": [{"args": [
  {"tag": {{ tag|json }}},
  {"data": {{ data|json(sort_keys=False) }}}
]}]}}
