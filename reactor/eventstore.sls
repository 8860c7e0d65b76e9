#!jinja|json
{#-
  eventstore: hand every job return (salt/job/<jid>/ret/<minion>) seen on the
  master bus to the eventstore runner, which checks it and stores it.

  Returns the runner would ignore start no runner job at all: those of
  saltutil.find_job (Salt polls every running job with it) and of the
  functions in the master config's `eventstore: ignore_funs`.  Each runner job
  costs the reactor ~20 ms of CPU whatever the runner does; deciding here costs
  a render.  The globs mean what they mean to the runner (fnmatchcase); a glob
  with `[` is left to the runner.  Anything not decided here (no function name,
  an odd shape) goes to the runner, which keeps its own filter.

  Written in JSON rather than YAML because the whole event is rendered into it:
  the JSON renderer reads any return back exactly as the minion sent it (YAML
  refuses some strings, e.g. lone surrogates) and parses big returns ten times
  faster.  sort_keys=False: a return whose keys mix types cannot be sorted.
-#}
{%- set own = opts.get('eventstore') if opts.get('eventstore') is mapping else {} %}
{%- set globs = own.get('ignore_funs') or [] %}
{%- set globs = ['saltutil.find_job'] + ([globs] if globs is string else (globs|list if (globs is iterable and globs is not mapping) else [])) %}
{%- set load = data if data is mapping else {} %}
{#- Older paths nest a return load one level down, as the runner's _unwrap knows. #}
{%- if '/ret/' in tag and load.get('data') is mapping and 'return' not in load %}
{%-   set load = load.get('data') %}
{%- endif %}
{%- set fun = load.get('fun') %}
{%- set ns = namespace(name='', ignored=false) %}
{%- if fun is string %}
{%-   set ns.name = fun %}
{%- elif fun is sequence and fun is not mapping and fun|select('string')|list|length == fun|length %}
{#-   A compound job (salt '*' test.ping,test.version): the runner matches the joined names. #}
{%-   set ns.name = fun|join(',') %}
{%- endif %}
{%- if ns.name %}
{%-   for glob in globs if glob is string and '[' not in glob %}
{%-     set pattern = '(?s)' ~ (glob|regex_escape|replace('\\*', '.*')|replace('\\?', '.')) ~ '\\Z' %}
{%-     if ns.name|regex_match(pattern) is not none %}{% set ns.ignored = true %}{% endif %}
{%-   endfor %}
{%- endif %}
{%- if ns.ignored %}
{}
{%- else %}
{"eventstore_store": {"runner.eventstore.store": [{"args": [
  {"tag": {{ tag|json }}},
  {"data": {{ data|json(sort_keys=False) }}}
]}]}}
{%- endif %}
