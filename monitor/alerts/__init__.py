"""Alerting: check results -> dedup/cooldown/resolve (rules) -> durable outbox -> sinks.

- `rules.py`: one dedup key per (model, check, feature, severity) and route; cooldown;
  resolve notifications reuse the key.
- `outbox.py`: the outbox table in the results store; delivery at least once, retries with
  exponential backoff and jitter, 429/503 Retry-After honoured, dead-letter after N attempts.
- `sinks.py`: webhook (Standard Webhooks signature), Slack, SMTP email, Alertmanager, log;
  a plugin registry with the `driftline.alert_sinks` entry-point group.
- `ssrf.py`: outbound HTTP only to vetted addresses, no redirects.
- `signing.py`: Standard Webhooks signing and verification.
"""
