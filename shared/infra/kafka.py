"""Apache Kafka 4.1.1 as plain JVM processes: jars from Maven Central, KRaft nodes.

No Docker engine and no download site other than Maven Central: the broker's classpath is
materialised from deploy/local/kafka/pom.xml into a cache outside the checkout (so fresh clones
and CI reuse it), while data, config and logs live in the caller's state dir.

A state dir holds one cluster whose `Layout` is fixed when it is first made: one node by default,
or N (`--brokers 3`: three JVMs, each a controller and a broker, in a static quorum); PLAINTEXT
by default, or SASL_SSL with SCRAM-SHA-512 (`--secure`: users created in the storage format step,
the server certificate from shared/infra/tls.py). Node 1 keeps `<state dir>/kafka/`, node N
`<state dir>/kafka/node-N/`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from string import Template
from typing import Any

from shared.infra import paths, prereqs
from shared.infra.proc import (
    InfraError,
    alive,
    cmdline,
    locked,
    read_pid,
    rotate,
    run_async,
    tail,
    terminate,
    write_private,
)
from shared.infra.tls import TlsFiles
from shared.settings import REPO_ROOT

log = logging.getLogger("switchboard.infra")

KAFKA_VERSION = "4.1.1"
DEPLOY_DIR = REPO_ROOT / "deploy" / "local" / "kafka"
POM = DEPLOY_DIR / "pom.xml"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.10.0"
# Jars whose presence proves the copy finished: the broker and its logging binding.
REQUIRED_JARS = (f"kafka_2.13-{KAFKA_VERSION}.jar", "log4j-slf4j-impl-2.24.3.jar")
# Heap sized for a laptop/CI runner; G1 options as in Kafka's own kafka-run-class.sh.
JVM_OPTS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    # C1 only: the optimising C2 compiler was half of this broker's CPU for the first minutes
    # of a run (perf at a steady 25 contacts/s: 48 % of the JVM's samples in its compiler
    # threads), on a machine whose two cores the services need; at the rates a local broker
    # sees, C1's code is fast enough (docs/benchmarks.md).
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)
# Several nodes on one small machine: each gets less.
JVM_HEAP_MULTI = ("-Xms128m", "-Xmx384m")
READY_LINE = "Kafka Server started"
SASL_MECHANISM = "SCRAM-SHA-512"
BROKER_USER = "broker"  # inter-broker replication
CLIENT_USER = "switchboard"  # the services, the CLI, the tests


@dataclass(frozen=True)
class Node:
    node_id: int
    broker_port: int
    controller_port: int


@dataclass(frozen=True)
class Layout:
    """What one state dir's cluster is: its nodes and whether it is secure. Fixed at creation
    (the storage is formatted for it); `infra down --purge` forgets it."""

    nodes: tuple[Node, ...]
    secure: bool = False

    @property
    def brokers(self) -> int:
        return len(self.nodes)

    @property
    def replication(self) -> int:
        return min(3, self.brokers)

    @property
    def min_isr(self) -> int:
        return 2 if self.replication >= 3 else 1

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.broker_port}" for n in self.nodes)

    @classmethod
    def load(cls, state_dir: Path) -> Layout | None:
        try:
            raw = json.loads((state_dir / "kafka" / "layout.json").read_text())
            return cls(tuple(Node(**n) for n in raw["nodes"]), bool(raw["secure"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, state_dir: Path) -> None:
        path = state_dir / "kafka" / "layout.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"nodes": [asdict(n) for n in self.nodes],
                                    "secure": self.secure}, indent=2) + "\n")


@dataclass(frozen=True)
class ScramUsers:
    """The SCRAM-SHA-512 passwords of the secure mode, generated once (0600)."""

    broker: str
    client: str

    @classmethod
    def ensure(cls, state_dir: Path) -> ScramUsers:
        users = cls.load(state_dir)
        if users is None:
            users = cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24))
            write_private(state_dir / "kafka" / "scram.json", json.dumps(asdict(users)) + "\n")
        return users

    @classmethod
    def load(cls, state_dir: Path) -> ScramUsers | None:
        try:
            return cls(**json.loads((state_dir / "kafka" / "scram.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None


@dataclass(frozen=True)
class Paths(paths.Paths):
    """Where one state dir keeps a broker's files (each node of a cluster its own)."""

    node: int = 1

    @classmethod
    def of(cls, state_dir: Path, node: int = 1) -> Paths:
        root = state_dir / "kafka" if node == 1 else state_dir / "kafka" / f"node-{node}"
        return cls("kafka", root=root, logs=state_dir / "logs", server=root, node=node,
                   log_name="kafka.log" if node == 1 else f"kafka-{node}.log")

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def cluster_id(self) -> Path:
        return self.root / "cluster.id"


def cache_dir() -> Path:
    env = os.environ.get("SWITCHBOARD_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".cache" / "switchboard" / f"kafka-{KAFKA_VERSION}"


def _ensure(name: str) -> None:
    """Install a missing program (apt-get on Debian/Ubuntu), else fail naming the command."""
    try:
        prereqs.ensure((name,))
    except prereqs.PrerequisiteError as e:
        raise InfraError(str(e)) from None


_java: list[str] = []  # found once per process: `java -version` costs a JVM start


def java_bin() -> str:
    """Java 17+ (JAVA_HOME first, then PATH), installed first if missing or too old."""
    if not _java:
        _ensure("java")
        found = prereqs.java_path()
        if not found:
            raise InfraError(f"java not found: Kafka 4 needs Java {prereqs.JAVA_MIN}+")
        _java.append(found)
    return _java[0]


def ensure_jars(cache: Path | None = None) -> tuple[Path, bool]:
    """The broker's lib dir, downloading it with Maven on first use. Returns (lib, downloaded)."""
    cache = cache or cache_dir()
    lib = cache / "lib"
    # The marker holds the pom's hash: editing the pom (e.g. a version bump) re-materialises.
    marker = lib / ".complete"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()

    def complete() -> bool:
        try:
            return marker.read_text().strip() == digest
        except OSError:
            return False

    if complete():
        return lib, False
    with locked(cache / ".lock"):
        if complete():  # another process finished it while we waited for the lock
            return lib, False
        _ensure("maven")  # needed once, to download Kafka into the cache
        mvn = shutil.which("mvn")
        if not mvn:
            raise InfraError(f"mvn not found: it is needed once to download Kafka into {cache}")
        log.info("downloading Kafka %s jars from Maven Central into %s", KAFKA_VERSION, lib)
        shutil.rmtree(lib, ignore_errors=True)
        cmd = [
            mvn, "-q", "-B", "-f", str(POM), f"-Dmaven.repo.local={cache / 'm2'}",
            f"{DEPENDENCY_PLUGIN}:copy-dependencies", f"-DoutputDirectory={lib}",
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        missing = [j for j in REQUIRED_JARS if not (lib / j).is_file()]
        if done.returncode != 0 or missing:
            out = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
            raise InfraError(f"could not materialise the Kafka classpath ({' '.join(cmd)}):\n{out}")
        marker.write_text(digest + "\n")
    return lib, True


def running_pid(state_dir: Path, node: int = 1) -> int | None:
    """Our broker's pid if it runs. The command line must name our server.properties, so a
    recycled pid or another engineer's broker is never mistaken for ours."""
    p = Paths.of(state_dir, node)
    pid = read_pid(p.pid)
    if pid and alive(pid) and str(p.properties) in cmdline(pid):
        return pid
    return None


def cluster_id(state_dir: Path) -> str:
    """The KRaft cluster id: 16 random bytes, unpadded base64url, created once per state dir."""
    p = Paths.of(state_dir)
    if p.cluster_id.is_file():
        return p.cluster_id.read_text().strip()
    cid = "-"
    while cid.startswith("-"):  # as Kafka's Uuid.randomUuid(): "-…" would read as an option
        cid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    p.root.mkdir(parents=True, exist_ok=True)
    p.cluster_id.write_text(cid + "\n")
    return cid


def render(state_dir: Path, layout: Layout, node: Node) -> str:
    """The node's server.properties."""
    template = Template((DEPLOY_DIR / "server.properties.template").read_text())
    security = ""
    listener = "PLAINTEXT"
    if layout.secure:
        listener = "SASL_SSL"
        tls = TlsFiles.of(state_dir)
        users = ScramUsers.ensure(state_dir)
        security = "\n".join((
            "# --secure: clients and replication over TLS, authenticated with SCRAM-SHA-512.",
            f"sasl.enabled.mechanisms={SASL_MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={SASL_MECHANISM}",
            (f"listener.name.sasl_ssl.{SASL_MECHANISM.lower()}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_USER}" password="{users.broker}";'),
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={tls.keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={tls.ca}",
            "ssl.endpoint.identification.algorithm=https",
            "ssl.enabled.protocols=TLSv1.3,TLSv1.2",
            "",
        ))
    return template.substitute(
        node_id=node.node_id,
        voters=",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in layout.nodes),
        listener=listener, broker_port=node.broker_port, controller_port=node.controller_port,
        log_dirs=Paths.of(state_dir, node.node_id).data, replication=layout.replication,
        min_isr=layout.min_isr, security=security,
    )


def start(state_dir: Path, layout: Layout, node: Node, lib: Path) -> int:
    """Render the config, format storage on first start, launch the node detached; its pid."""
    p = Paths.of(state_dir, node.node_id)
    p.data.mkdir(parents=True, exist_ok=True)
    p.logs.mkdir(parents=True, exist_ok=True)
    # 0600: in the secure mode it holds the inter-broker password.
    write_private(p.properties, render(state_dir, layout, node))
    java = java_bin()
    classpath = f"{lib}/*"
    logging_opts = [
        f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={p.logs}",
    ]
    cid = cluster_id(state_dir)
    if not (p.data / "meta.properties").is_file():
        scram: list[str] = []
        if layout.secure:
            # The users exist from the first start: SCRAM records in the bootstrap metadata.
            users = ScramUsers.ensure(state_dir)
            for name, password in ((BROKER_USER, users.broker), (CLIENT_USER, users.client)):
                scram += ["--add-scram", f"{SASL_MECHANISM}=[name={name},password={password}]"]
        fmt = subprocess.run(
            [java, "-Xmx256m", *logging_opts, "-cp", classpath, "kafka.tools.StorageTool",
             "format", "-t", cid, "-c", str(p.properties), *scram],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if fmt.returncode != 0:
            raise InfraError(f"kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")

    rotate(p.log)
    heap = JVM_OPTS if layout.brokers == 1 else (*JVM_HEAP_MULTI, *JVM_OPTS[2:])
    # Launch through `sh … &` so the JVM is not our child: it outlives this process without
    # becoming a zombie, and Popen never warns about a still-running subprocess.
    launcher = subprocess.run(
        ["/bin/sh", "-c", 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!', "sh",
         str(p.log), java, *heap, *logging_opts, "-cp", classpath, "kafka.Kafka",
         str(p.properties)],
        capture_output=True, text=True, check=True, start_new_session=True, cwd=p.root,
    )  # fmt: skip
    pid = int(launcher.stdout.strip())
    p.pid.write_text(f"{pid}\n")
    return pid


def client_options(state_dir: Path, layout: Layout) -> dict[str, Any]:
    """aiokafka options for talking to this cluster (empty unless secure)."""
    if not layout.secure:
        return {}
    from aiokafka.helpers import create_ssl_context  # deferred: only `up` needs aiokafka

    users = ScramUsers.ensure(state_dir)
    return {
        "security_protocol": "SASL_SSL",
        "ssl_context": create_ssl_context(cafile=str(TlsFiles.of(state_dir).ca)),
        "sasl_mechanism": SASL_MECHANISM,
        "sasl_plain_username": CLIENT_USER,
        "sasl_plain_password": users.client,
    }


def client_env(state_dir: Path, layout: Layout) -> dict[str, str]:
    """The same as the environment variables of shared/settings.py (for infra.env). Stated
    for a plaintext cluster too, so that it wins over another state dir's infra.env."""
    if not layout.secure:
        return {"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
    users = ScramUsers.ensure(state_dir)
    return {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": SASL_MECHANISM,
        "KAFKA_SASL_USERNAME": CLIENT_USER,
        "KAFKA_SASL_PASSWORD": users.client,
        "KAFKA_SSL_CAFILE": str(TlsFiles.of(state_dir).ca),
    }


def wait_logged_ready(state_dir: Path, node: int, pid: int, deadline: float) -> None:
    """Until `deadline` (time.monotonic()): the node logs its ready line."""
    p = Paths.of(state_dir, node)

    def fail(why: str) -> InfraError:
        return InfraError(f"Kafka node {node} {why}; last lines of {p.log}:\n{tail(p.log)}")

    seen = ""
    offset = 0
    while READY_LINE not in seen:
        if not alive(pid):
            raise fail("exited during start-up")
        if time.monotonic() > deadline:
            raise fail(f"did not log {READY_LINE!r} in time")
        time.sleep(0.2)
        try:
            with p.log.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
        except OSError:
            continue
        offset += len(chunk)
        # Keep a little overlap in case the line was split between two reads.
        seen = seen[-200:] + chunk.decode(errors="replace")


def wait_ready(state_dir: Path, pids: dict[int, int], layout: Layout, deadline: float) -> None:
    """Until `deadline`: every node started (`pids`: node id -> pid) logs its ready line, then
    a metadata call is answered, with our cluster id (not a stranger on a reused port) and all
    of the layout's brokers registered."""
    for node, pid in pids.items():
        wait_logged_ready(state_dir, node, pid, deadline)
    p = Paths.of(state_dir)

    def fail(why: str) -> InfraError:
        return InfraError(f"Kafka {why}; last lines of {p.log}:\n{tail(p.log)}")

    expected = cluster_id(state_dir)
    options = client_options(state_dir, layout)
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for node, pid in pids.items():
            if not alive(pid):
                raise fail(f"node {node} exited during start-up")
        try:
            found, brokers = run_async(lambda: _describe_cluster(layout.bootstrap, options))
        except Exception as e:  # connection refused, timeouts: retry until the deadline
            last_error = e
            time.sleep(0.3)
            continue
        if found != expected:
            raise fail(f"on {layout.bootstrap} has cluster id {found}, expected {expected}")
        if brokers >= layout.brokers:
            return
        last_error = InfraError(f"{brokers} of {layout.brokers} brokers registered")
        time.sleep(0.3)
    raise fail(f"did not answer a metadata request in time ({last_error!r})")


async def _describe_cluster(bootstrap: str, options: dict[str, Any]) -> tuple[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient  # deferred: only `up` needs aiokafka

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, **options)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return str(cluster["cluster_id"]), len(cluster["brokers"])
    finally:
        await admin.close()


def stop_node(state_dir: Path, node: int = 1, timeout: float = 60) -> bool:
    """SIGTERM (controlled shutdown, flushes the log), SIGKILL after `timeout` s.
    Returns True if a running node was stopped."""
    p = Paths.of(state_dir, node)
    pid = running_pid(state_dir, node)
    if pid is not None and not terminate(pid, timeout):
        log.warning("Kafka node %d (pid %d) ignored SIGTERM for %.0f s and was killed",
                    node, pid, timeout)
    p.pid.unlink(missing_ok=True)
    return pid is not None


def node_ids(state_dir: Path) -> list[int]:
    layout = Layout.load(state_dir)
    return [n.node_id for n in layout.nodes] if layout else [1]


def stop(state_dir: Path, timeout: float = 60) -> bool:
    """Stop every node at once: one by one, the last ones could not finish their controlled
    shutdown without a controller quorum and would wait for the timeout. True if any ran."""
    pids = {n: pid for n in node_ids(state_dir)
            if (pid := running_pid(state_dir, n)) is not None}
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for node, pid in pids.items():
        if not terminate(pid, timeout):  # already signalled: waits, SIGKILL after timeout
            log.warning("Kafka node %d (pid %d) ignored SIGTERM for %.0f s and was killed",
                        node, pid, timeout)
    for node in node_ids(state_dir):
        Paths.of(state_dir, node).pid.unlink(missing_ok=True)
    return bool(pids)


def remove(state_dir: Path) -> None:
    """Delete the brokers' data, configs, cluster id, layout and users (after stop): the next
    start is empty."""
    shutil.rmtree(Paths.of(state_dir).root, ignore_errors=True)
