# An orchestration of two steps, the second failing: what an admin audits first
# after a bad deploy (tests/e2e/test_runner_jobs.py).  pillar: {"target": <minion id>}
echo-on-the-minion:
  salt.function:
    - name: test.echo
    - tgt: {{ pillar["target"] }}
    - arg:
      - deployed

the-step-that-fails:
  test.fail_without_changes:
    - require:
      - salt: echo-on-the-minion
