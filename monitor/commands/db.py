"""`driftline db upgrade | current | prune`: the results store's schema (Alembic migrations) and retention."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _url(config: Optional[Path], url: Optional[str]) -> str:
    import os

    if url:
        return url
    if config is not None:
        from monitor.config import load_config

        return load_config(config).store_url()
    if os.environ.get("DRIFTLINE_STORE_URL"):
        return os.environ["DRIFTLINE_STORE_URL"]
    from core.errors import ConfigError

    raise ConfigError("give --config FILE or --url URL (or set DRIFTLINE_STORE_URL)")


def _on_store(url_of, work):
    """(url, work(engine)) on the store; any failure is one line naming the (redacted) URL, exit 2."""
    from monitor.cli import _fail
    from monitor.database import create_store_engine, redacted
    from core.errors import DriftlineError

    target = "the results store"
    try:
        target = url_of()
        engine = create_store_engine(target)
        try:
            return target, work(engine)
        finally:
            engine.dispose()
    except DriftlineError as exc:
        _fail(str(exc))
    except Exception as exc:  # a database that cannot be reached: bad input
        _fail(f"{redacted(target)}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")


def register(app: typer.Typer, check_app: typer.Typer) -> None:
    from monitor.cli import _fail, out
    from core.errors import DriftlineError

    db_app = typer.Typer(rich_markup_mode=None, help="The results store's schema (Alembic migrations).", no_args_is_help=True)
    app.add_typer(db_app, name="db")

    config_option = typer.Option(None, "--config", help="The driftline YAML config (its store.url).")
    url_option = typer.Option(None, "--url", help="A SQLAlchemy URL; overrides --config.")

    @db_app.command("upgrade")
    def upgrade(config: Optional[Path] = config_option, url: Optional[str] = url_option,
                revision: str = typer.Option("head", help="Target revision.")) -> None:
        """Apply the schema migrations (idempotent)."""
        from monitor import migrations
        from monitor.database import redacted

        try:
            target = _url(config, url)
            reached = migrations.upgrade(target, revision)
        except DriftlineError as exc:
            _fail(str(exc))
        except Exception as exc:  # a database that cannot be reached or migrated: bad input
            _fail(f"{redacted(target)}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        out.print(f"{redacted(target)}: at revision {reached}", markup=False, highlight=False)

    @db_app.command("current")
    def current(config: Optional[Path] = config_option, url: Optional[str] = url_option) -> None:
        """Print the store's revision; exit 1 when it is not at head."""
        from monitor import migrations
        from monitor.database import redacted

        target, found = _on_store(lambda: _url(config, url), migrations.current)
        head = migrations.head()
        out.print(f"{redacted(target)}: revision {found or 'none'} (head {head})", markup=False, highlight=False)
        raise typer.Exit(0 if found == head else 1)

    @db_app.command("prune")
    def prune_command(config: Path = typer.Option(..., "--config", help="The driftline YAML config (store.url, "
                                                                        "store.retention)."),
                      dry_run: bool = typer.Option(False, "--dry-run", help="Count what would go; delete nothing."),
                      output_format: str = typer.Option("table", "--format", help="table or json.")) -> None:
        """Delete what is older than store.retention (results, serving profiles, delivered alerts, job events)."""
        import json
        import sys

        from monitor import migrations
        from monitor.config import load_config
        from monitor.retention import prune

        loaded = []

        def url_of() -> str:
            loaded.append(load_config(config))
            return loaded[0].store_url()

        def work(engine):
            migrations.check_current(engine)  # never delete through a schema this driftline does not know
            return prune(engine, loaded[0].store.retention.policy(), dry_run=dry_run)

        _, removed = _on_store(url_of, work)
        if output_format == "json":
            sys.stdout.write(json.dumps({"dry_run": dry_run, "removed": removed}) + "\n")
            return
        verb = "would delete" if dry_run else "deleted"
        for table, count in removed.items():
            out.print(f"{table}: {verb} {count}", markup=False, highlight=False)
        if not removed:
            out.print("store.retention keeps everything", markup=False, highlight=False)
