"""docker-compose.yml and the Dockerfile agree with Duly's settings and CLI (no Docker needed)."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import typer
import yaml
from pydantic import ValidationError

import duly.cli
from duly.settings import DEV_SECRET_KEY, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[1]
TEST_SECRET = "t" * 48
#: What a production host must set (the secret and the public URL are required).
HOST = {"DULY_SECRET_KEY": TEST_SECRET, "DULY_PUBLIC_URL": "https://duly.example.com"}
#: Settings that do not belong in the containers' shared environment, and why.
NOT_IN_CONTAINERS = {
    "data_dir": "local state of `duly dev` only",
    "temporal_ui_port": "the dev server's Web UI; compose runs temporalio/ui",
    "api_host": "set on duly-api itself",
    "api_port": "set on duly-api itself",
    "worker_metrics_port": "set on duly-worker itself",
    "temporal_metrics_address": "set on duly-worker itself",
}
DULY_SERVICES = ("duly-migrate", "duly-api", "duly-worker")

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(LookupError):
    """A ``${VAR:?message}`` reference with VAR unset or empty (Compose refuses to start)."""


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Resolve Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` against ``env``."""

    def resolve(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name, "")
        if current:
            return current
        if op == ":?":
            raise MissingVariable(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _VAR.sub(resolve, value)


def service_env(service: Mapping[str, Any], host: Mapping[str, str]) -> dict[str, str]:
    """A service's container environment as Compose would build it from the ``host`` env.

    A key without a value is taken from the host when set there and left out otherwise.
    """
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    resolved: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            if host.get(key):
                resolved[key] = host[key]
            continue
        resolved[key] = interpolate(str(value), host)
    return resolved


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svc = compose["services"]
    assert isinstance(svc, dict)
    return svc


def test_expected_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= {"postgresql", "temporal", "temporal-ui", *DULY_SERVICES}


def test_every_duly_variable_is_a_settings_field(services: dict[str, dict[str, Any]]) -> None:
    fields = set(Settings.model_fields)
    seen = 0
    for name, service in services.items():
        for key in service.get("environment") or {}:
            if key.startswith("DULY_"):
                seen += 1
                assert key.removeprefix("DULY_").lower() in fields, f"{name}: {key} is unknown"
    assert seen >= len(DULY_SERVICES) * 5, "the shared DULY_* environment went missing"


def test_duly_commands_exist_in_the_cli(services: dict[str, dict[str, Any]]) -> None:
    group = typer.main.get_command(duly.cli.app)
    commands = set(getattr(group, "commands", {}))
    for name in DULY_SERVICES:
        command = services[name]["command"]
        first = command[0] if isinstance(command, list) else command.split()[0]
        assert first in commands, f"{name} runs `duly {first}`, which the CLI does not have"


def test_worker_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    worker = services["duly-worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert int(worker["deploy"]["replicas"]) >= 2


def test_depends_on_targets_exist(services: dict[str, dict[str, Any]]) -> None:
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        for target in deps:
            assert target in services, f"{name} depends on unknown service {target}"
            if isinstance(deps, dict):
                condition = deps[target]["condition"]
                assert condition in conditions
                if condition == "service_healthy":
                    assert "healthcheck" in services[target], f"{target} has no healthcheck"


def test_database_url_points_at_the_postgresql_service(
    services: dict[str, dict[str, Any]],
) -> None:
    host = {**HOST, "POSTGRES_PASSWORD": "s3cret"}
    pg = service_env(services["postgresql"], host)
    for name in DULY_SERVICES:
        url = sa.make_url(service_env(services[name], host)["DULY_DATABASE_URL"])
        assert url.drivername == "postgresql+psycopg"
        assert (url.host, url.port) == ("postgresql", 5432)
        assert url.username == pg["POSTGRES_USER"]
        assert url.password == pg["POSTGRES_PASSWORD"] == "s3cret"
        assert url.database == pg["POSTGRES_DB"]
    temporal = service_env(services["temporal"], host)
    assert temporal["POSTGRES_SEEDS"] == "postgresql"
    assert temporal["POSTGRES_PWD"] == "s3cret"


def test_temporal_address_is_the_temporal_service(services: dict[str, dict[str, Any]]) -> None:
    for name in (*DULY_SERVICES, "temporal-ui"):
        env = service_env(services[name], HOST)
        address = env.get("DULY_TEMPORAL_ADDRESS") or env["TEMPORAL_ADDRESS"]
        assert address.rsplit(":", 1)[0] in services


def _apply(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    for key in [k for k in os.environ if k.startswith("DULY_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("name", DULY_SERVICES)
def test_compose_environment_is_valid_production_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    _apply(monkeypatch, service_env(services[name], HOST))
    settings = Settings()
    assert settings.env == "production"
    assert settings.secret_key.get_secret_value() == TEST_SECRET
    assert settings.sendgrid_api_key is None  # unset on the host -> unset, not ""
    if name == "duly-api":
        assert settings.api_host == "0.0.0.0"


def test_compose_requires_a_secret(services: dict[str, dict[str, Any]]) -> None:
    with pytest.raises(MissingVariable, match="DULY_SECRET_KEY"):
        service_env(services["duly-api"], {"DULY_PUBLIC_URL": HOST["DULY_PUBLIC_URL"]})


def test_compose_requires_the_public_url(services: dict[str, dict[str, Any]]) -> None:
    """Links in messages and provider webhooks use it: a silent localhost default breaks both."""
    with pytest.raises(MissingVariable, match="DULY_PUBLIC_URL"):
        service_env(services["duly-api"], {"DULY_SECRET_KEY": TEST_SECRET})


@pytest.mark.parametrize("name", DULY_SERVICES)
def test_every_setting_reaches_the_containers(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    """Each of Duly's settings is passed (or passed through from the host) to every service.

    A setting added to ``Settings`` without a line in compose fails here until it is listed
    there (or in ``NOT_IN_CONTAINERS`` with a reason).
    """
    listed = {
        key.removeprefix("DULY_").lower()
        for key in services[name].get("environment") or {}
        if key.startswith("DULY_")
    }
    missing = sorted(set(Settings.model_fields) - listed - set(NOT_IN_CONTAINERS))
    assert not missing, f"{name} never receives DULY_{{{', '.join(missing).upper()}}}"


def test_passed_through_settings_reach_the_container(services: dict[str, dict[str, Any]]) -> None:
    host = {**HOST, "DULY_SENDGRID_WEBHOOK_PUBLIC_KEY": "MFkw...", "DULY_SEND_LEASE_SECONDS": "90"}
    env = service_env(services["duly-worker"], host)
    assert env["DULY_SENDGRID_WEBHOOK_PUBLIC_KEY"] == "MFkw..."
    assert env["DULY_SEND_LEASE_SECONDS"] == "90"
    assert env["DULY_PUBLIC_URL"] == "https://duly.example.com"
    assert "DULY_SLACK_BOT_TOKEN" not in env  # unset on the host: unset, not ""


def _published(service: Mapping[str, Any], host: Mapping[str, str]) -> list[str]:
    """The host side of each published port (``127.0.0.1:8233``), after interpolation."""
    bound = []
    for port in service.get("ports") or []:
        spec = interpolate(str(port), host)
        bound.append(spec.rsplit(":", 1)[0])  # drop the container port
    return bound


def test_nothing_is_published_on_every_interface(services: dict[str, dict[str, Any]]) -> None:
    """Temporal, its UI and the API bind to loopback unless the operator says otherwise."""
    for name, service in services.items():
        for host_side in _published(service, HOST):
            assert host_side.startswith("127.0.0.1:"), f"{name} publishes {host_side}"
    assert "ports" not in services["postgresql"]
    api = _published(services["duly-api"], {**HOST, "DULY_API_PUBLISH": "0.0.0.0:8000"})
    assert api == ["0.0.0.0:8000"], "DULY_API_PUBLISH opens the API deliberately"


def test_temporal_ui_is_read_only(services: dict[str, dict[str, Any]]) -> None:
    """Write actions in the UI would let anyone reaching it terminate or signal workflows."""
    env = service_env(services["temporal-ui"], HOST)
    assert env["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "true"


def test_dev_secret_is_refused_in_production(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = {**HOST, "DULY_SECRET_KEY": DEV_SECRET_KEY}
    _apply(monkeypatch, service_env(services["duly-api"], host))
    with pytest.raises((SettingsError, ValidationError), match="DULY_SECRET_KEY"):
        Settings()


def _stages(dockerfile: str) -> list[list[str]]:
    """Dockerfile instructions (continuations joined) grouped by FROM stage."""
    text = re.sub(r"\\\n", " ", dockerfile)
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_builds_with_gcc_and_runs_duly_as_non_root() -> None:
    stages = _stages((ROOT / "Dockerfile").read_text())
    assert len(stages) >= 2, "expected a builder and a runtime stage"
    builder, runtime = stages[0], stages[-1]
    assert builder[0].split()[1] == "python:3.11-slim-bookworm"
    assert any(i.startswith("RUN") and "apt-get install" in i and " gcc" in i for i in builder)
    assert not any("gcc" in i for i in runtime), "compilers belong in the builder only"
    users = [i.split()[1] for i in runtime if i.upper().startswith("USER ")]
    assert users, "runtime stage must set USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    entrypoints = [i for i in runtime if i.upper().startswith("ENTRYPOINT ")]
    assert json.loads(entrypoints[-1].split(None, 1)[1]) == ["duly"]


def test_dockerfile_copies_every_package_and_ignores_local_state() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {
        part.rstrip("/")
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for part in line.split()[1:-1]
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", project["project"]["readme"]} <= copied
    missing = sorted(path for path in copied if not (ROOT / path).exists())
    assert not missing, f"the Dockerfile copies {missing}, which the repo does not have"
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".duly", ".git", "tests"} <= ignored


def test_prometheus_scrapes_the_api_every_worker_and_temporal(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each scrape target is a compose service on the port that service serves metrics on."""
    prometheus = services["prometheus"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"] if "./" in v}
    config_file = ROOT / mounted["/etc/prometheus/prometheus.yml"]
    jobs = {j["job_name"]: j for j in yaml.safe_load(config_file.read_text())["scrape_configs"]}

    def targets(job: str) -> set[tuple[str, int]]:
        found: set[tuple[str, int]] = set()
        for sd in jobs[job].get("dns_sd_configs", []):
            found |= {(name, int(sd["port"])) for name in sd["names"]}
        for static in jobs[job].get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                found.add((host, int(port)))
        for host, _ in found:
            assert host in services, f"{job} scrapes {host}, which is not a service"
        return found

    _apply(monkeypatch, service_env(services["duly-worker"], HOST))
    worker = Settings()
    assert worker.worker_metrics_port is not None and worker.temporal_metrics_address
    sdk_port = int(worker.temporal_metrics_address.rsplit(":", 1)[1])
    assert worker.temporal_metrics_address.startswith("0.0.0.0:")  # reachable from prometheus
    assert targets("duly-worker") == {("duly-worker", worker.worker_metrics_port)}
    assert targets("duly-worker-temporal-sdk") == {("duly-worker", sdk_port)}
    # Replicas: DNS discovery (every replica's address), not one static host.
    assert "dns_sd_configs" in jobs["duly-worker"]
    _apply(monkeypatch, service_env(services["duly-api"], HOST))
    api = Settings()
    assert targets("duly-api") == {("duly-api", api.api_port)}
    assert jobs["duly-api"]["metrics_path"] == "/metrics"
    temporal_env = service_env(services["temporal"], HOST)
    temporal_port = int(temporal_env["PROMETHEUS_ENDPOINT"].rsplit(":", 1)[1])
    assert targets("temporal") == {("temporal", temporal_port)}
    assert "ports" not in services["duly-worker"]  # metrics stay on the compose network
