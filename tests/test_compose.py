"""docker-compose.yml and the Dockerfile: valid for Debian's docker-compose, loopback ports,
mounts that exist. No container engine is needed (`docker-compose config` only parses)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
needs_compose = pytest.mark.skipif(shutil.which("docker-compose") is None,
                                   reason="docker-compose missing (`make test` installs Debian's docker-compose)")


def _config(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["docker-compose", "-f", str(path), "--project-directory", str(ROOT), "config", "-q"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@needs_compose
def test_compose_file_is_valid():
    completed = _config(COMPOSE)
    assert completed.returncode == 0, completed.stderr
    assert "WARNING" not in completed.stderr, completed.stderr


@needs_compose
def test_an_invalid_compose_file_is_rejected(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    restart: unless-stopped\n", "    restart: [oops]\n", 1))
    assert _config(broken).returncode != 0


def test_stack_services_and_loopback_ports():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"driftline", "prometheus", "alertmanager", "grafana"}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert services["driftline"]["command"][:2] == ["demo", "--serve"]
    assert services["grafana"]["image"].startswith("grafana/grafana:11.")


def test_bind_mounts_exist_in_the_repository():
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)


def test_dockerfile_copies_every_package():
    packages = re.findall(r'"([a-z]+)\*"', (ROOT / "pyproject.toml").read_text().split("[tool.setuptools.packages.find]")[1]
                          .split("\n\n")[0])
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in packages:
        assert re.search(rf"^COPY {package} {package}$", dockerfile, re.M), package
    assert "USER driftline" in dockerfile


def test_driftline_and_prometheus_share_the_token_secret(tmp_path):
    compose = yaml.safe_load(COMPOSE.read_text())
    prometheus = yaml.safe_load((ROOT / "dashboards/prometheus/prometheus.yml").read_text())
    secret_path = prometheus["scrape_configs"][0]["authorization"]["credentials_file"]
    assert secret_path == "/run/secrets/driftline_token"
    for name in ("driftline", "prometheus"):
        assert "driftline_token" in compose["services"][name]["secrets"]
    entrypoint = compose["services"]["driftline"]["entrypoint"]
    assert secret_path in entrypoint[2]
    # The wrapper hands the command to driftline with the token in DRIFTLINE_TOKEN.
    token = tmp_path / "token"
    token.write_text("tok-from-secret\n")
    script = entrypoint[2].replace("$$", "$").replace(secret_path, str(token)).replace(
        "exec driftline", "exec env")
    completed = subprocess.run([*entrypoint[:2], script, entrypoint[3], "sh", "-c", 'echo "$DRIFTLINE_TOKEN|$0"',
                                "arg0"], capture_output=True, text=True, timeout=30)
    assert completed.stdout.strip() == "tok-from-secret|arg0", completed.stderr
