"""The whole system on one machine (``up``: broker, workers and gateway, supervised), and its parts
one by one: ``broker``, ``topics``, ``gateway``, ``token``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streams.cli.common import (
    READY_TIMEOUT_S,
    REALTIME_STAGES,
    STAGES,
    languages,
    log,
    require_bootstrap,
    wait_for_signal,
)
from streams.cli.workers import spawn_workers, stand_by
from streams.settings import Settings, get_settings

if TYPE_CHECKING:
    from streams.broker import EmbeddedKafka, EmbeddedTansu
    from streams.cli.supervisor import Supervisor


def cmd_broker(args: argparse.Namespace) -> None:
    from streams.broker import embedded_broker, ensure_topics

    settings = get_settings()
    with embedded_broker(settings, args.port or settings.broker_port).start() as broker:
        asyncio.run(ensure_topics(broker.bootstrap, settings.partitions, settings.replication_factor))
        print(f"broker ready: {broker.bootstrap}", flush=True)
        wait_for_signal()


def cmd_topics(args: argparse.Namespace) -> None:
    from streams.broker import ensure_topics
    from streams.topics import ALL_TOPICS

    settings = get_settings()
    asyncio.run(ensure_topics(require_bootstrap(settings), settings.partitions, settings.replication_factor))
    for spec in ALL_TOPICS:
        print(f"{spec.name:<28} {' '.join(f'{k}={v}' for k, v in spec.kafka_config().items())}")


def cmd_gateway(args: argparse.Namespace) -> None:
    from aiohttp import web

    from web.app import create_app

    settings = get_settings()
    if not settings.jwt_secret:
        sys.exit("set DRAGOMAN_JWT_SECRET (or use `dragoman up`, which makes one)")
    app = create_app(settings, require_bootstrap(settings), settings.jwt_secret, languages(settings))
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)


def cmd_token(args: argparse.Namespace) -> None:
    from web.auth import mint

    secret = get_settings().jwt_secret
    if not secret:
        sys.exit("set DRAGOMAN_JWT_SECRET to the gateway's secret")
    print(mint(secret, args.room, args.user, ttl_s=args.ttl, name=args.name))


@dataclass(frozen=True)
class System:
    url: str
    bootstrap: str
    secret: str
    supervisor: Supervisor
    broker_alive: Callable[[], bool]
    """False once the embedded broker (if this system started one) has died."""


@contextlib.contextmanager
def _supervisor_metrics(settings: Settings, broker: EmbeddedKafka | EmbeddedTansu | None) -> Iterator[None]:
    """``up``'s own /metrics, on the port after the workers': restarts of its children, and the
    embedded broker's memory (``dragoman_broker_process_*``; it only grows, see README)."""
    from prometheus_client import REGISTRY, ProcessCollector, start_http_server

    collector = None
    if broker is not None:
        collector = ProcessCollector(namespace="dragoman_broker", pid=lambda: broker.pid, registry=REGISTRY)
    server, _thread = start_http_server(settings.worker_web_port + len(STAGES), addr=settings.worker_web_host)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        if collector is not None:
            REGISTRY.unregister(collector)


@contextlib.contextmanager
def running_system(settings: Settings) -> Iterator[System]:
    """Models prepared, broker (unless external), three workers and a gateway, all ready; stopped on exit."""
    from agents import weights
    from streams.broker import embedded_broker, ensure_topics
    from streams.cli.supervisor import Supervisor
    from streams.model_paths import ModelPaths

    weights.prepare(ModelPaths(settings.models_dir), progress=sys.stderr.isatty())

    broker = None
    bootstrap = settings.kafka_bootstrap
    if not bootstrap:
        broker = embedded_broker(settings).start()
        bootstrap = broker.bootstrap
    asyncio.run(
        ensure_topics(bootstrap, settings.partitions, settings.replication_factor)
    )  # once, before five processes each check them
    secret = settings.jwt_secret or secrets.token_urlsafe(32)
    supervisor = Supervisor({"DRAGOMAN_KAFKA_BOOTSTRAP": bootstrap, "DRAGOMAN_JWT_SECRET": secret})
    try:
        spawn_workers(supervisor, settings.replicas)
        supervisor.spawn("gateway", ["gateway"])
        url = f"http://{settings.host}:{settings.port}"
        try:  # every stage owns every partition with warm models (see the gateway's /readyz)
            supervisor.wait_until_ready([f"{url}/readyz"], READY_TIMEOUT_S)
        except RuntimeError as exc:
            sys.exit(f"dragoman: {exc}")
        stand_by(supervisor, settings.replicas)  # after readiness: loading spares would only slow the start
        with _supervisor_metrics(settings, broker):
            yield System(url, bootstrap, secret, supervisor, lambda: broker is None or broker.alive)
    finally:
        supervisor.stop()
        if broker:
            broker.stop()


@contextlib.contextmanager
def settled_system(settings: Settings, timeout_s: float = 120.0) -> Iterator[System]:
    """:func:`running_system`, once every live stage's warm spare has loaded too: benches measure
    from there, since loading the spares takes the CPU the first measured round would need."""
    with running_system(settings) as system:
        deadline = time.monotonic() + timeout_s
        while settings.replicas == 1 and not all(system.supervisor.spare_warm(s) for s in REALTIME_STAGES):
            if time.monotonic() > deadline:
                sys.exit(f"dragoman: the warm spares were not loaded after {timeout_s:g} s")
            time.sleep(0.5)
        yield system


BROKER_DIED = "the embedded broker died"


def cmd_up(args: argparse.Namespace) -> None:
    from web.auth import mint

    settings = get_settings()
    if args.replicas is not None:  # validated as the variable would be
        settings = Settings.model_validate({**settings.model_dump(), "replicas": args.replicas})
    catalogue = languages(settings)  # before anything starts: a refused model refuses the whole system
    print("languages: " + ", ".join(c for c in catalogue.languages if catalogue.listenable(c)), flush=True)
    while True:
        with running_system(settings) as system:
            token = mint(system.secret, "*", "demo", name="Demo")
            # A secret made for this run is printed so that `dragoman token` can mint more with it.
            secret = "" if settings.jwt_secret else f" secret={system.secret}"
            # The host token goes in the fragment: browsers never send it, so no server log holds it.
            print(f"dragoman ready: {system.url}/#token={token} broker={system.bootstrap}{secret}", flush=True)

            def trouble() -> str | None:
                """A dead embedded broker takes everything with it; a crashed child is started again,
                and one that keeps crashing stops everything."""
                if not system.broker_alive():
                    return BROKER_DIED
                failed = system.supervisor.restart_exited()
                return f"{failed} kept crashing" if failed else None

            reason = wait_for_signal(trouble)
            log.warning("stopping (%s)", reason)
        if reason != BROKER_DIED:
            return
        # Same port and secret: clients reconnect to the same addresses with the same tokens.
        port = int(system.bootstrap.rsplit(":", 1)[1])
        settings = settings.model_copy(update={"broker_port": port, "jwt_secret": system.secret})
        kept = settings.broker_dir if settings.broker == "kafka" else settings.broker_storage
        if kept is None or str(kept).startswith("memory:"):
            log.error("starting everything again; what the broker held (topics, rooms, offsets) is gone")
        else:
            log.error("starting everything again, on the broker's storage %s", kept)
