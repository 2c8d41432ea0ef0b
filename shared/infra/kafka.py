"""Apache Kafka 4.1.1 as a plain JVM process: jars from Maven Central, one KRaft node.

No Docker engine and no download site other than Maven Central: the broker's classpath is
materialised from deploy/local/kafka/pom.xml into a cache outside the checkout (so fresh clones
and CI reuse it), while data, config and logs live in the caller's state dir.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

from shared.infra import prereqs
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
)
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
    "-Djava.awt.headless=true",
)
READY_LINE = "Kafka Server started"


@dataclass(frozen=True)
class Paths:
    """Where one state dir keeps the broker's files."""

    root: Path
    logs: Path

    @classmethod
    def of(cls, state_dir: Path) -> Paths:
        return cls(root=state_dir / "kafka", logs=state_dir / "logs")

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def cluster_id(self) -> Path:
        return self.root / "cluster.id"

    @property
    def pid(self) -> Path:
        return self.root / "kafka.pid"

    @property
    def log(self) -> Path:
        return self.logs / "kafka.log"


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


def running_pid(state_dir: Path) -> int | None:
    """Our broker's pid if it runs. The command line must name our server.properties, so a
    recycled pid or another engineer's broker is never mistaken for ours."""
    p = Paths.of(state_dir)
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


def start(state_dir: Path, broker_port: int, controller_port: int, lib: Path) -> int:
    """Render the config, format storage on first start, launch the broker detached; its pid."""
    p = Paths.of(state_dir)
    p.data.mkdir(parents=True, exist_ok=True)
    p.logs.mkdir(parents=True, exist_ok=True)
    template = Template((DEPLOY_DIR / "server.properties.template").read_text())
    p.properties.write_text(
        template.substitute(
            broker_port=broker_port, controller_port=controller_port, log_dirs=p.data
        )
    )
    java = java_bin()
    classpath = f"{lib}/*"
    logging_opts = [
        f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={p.logs}",
    ]
    cid = cluster_id(state_dir)
    if not (p.data / "meta.properties").is_file():
        fmt = subprocess.run(
            [java, "-Xmx256m", *logging_opts, "-cp", classpath, "kafka.tools.StorageTool",
             "format", "-t", cid, "-c", str(p.properties)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if fmt.returncode != 0:
            raise InfraError(f"kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")

    rotate(p.log)
    # Launch through `sh … &` so the JVM is not our child: it outlives this process without
    # becoming a zombie, and Popen never warns about a still-running subprocess.
    launcher = subprocess.run(
        ["/bin/sh", "-c", 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!', "sh",
         str(p.log), java, *JVM_OPTS, *logging_opts, "-cp", classpath, "kafka.Kafka",
         str(p.properties)],
        capture_output=True, text=True, check=True, start_new_session=True, cwd=p.root,
    )  # fmt: skip
    pid = int(launcher.stdout.strip())
    p.pid.write_text(f"{pid}\n")
    return pid


def wait_ready(state_dir: Path, pid: int, bootstrap: str, deadline: float) -> None:
    """Until `deadline` (time.monotonic()): the ready line in the log, then a metadata call
    answered by a broker with our cluster id (not a stranger on a reused port)."""
    p = Paths.of(state_dir)

    def fail(why: str) -> InfraError:
        return InfraError(f"Kafka {why}; last lines of {p.log}:\n{tail(p.log)}")

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

    expected = cluster_id(state_dir)
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not alive(pid):
            raise fail("exited during start-up")
        try:
            found = run_async(lambda: _describe_cluster_id(bootstrap))
        except Exception as e:  # connection refused, timeouts: retry until the deadline
            last_error = e
            time.sleep(0.3)
            continue
        if found != expected:
            raise fail(f"on {bootstrap} has cluster id {found}, expected {expected}")
        return
    raise fail(f"did not answer a metadata request in time ({last_error!r})")


async def _describe_cluster_id(bootstrap: str) -> str:
    from aiokafka.admin import AIOKafkaAdminClient  # deferred: only `up` needs aiokafka

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        return str(cluster["cluster_id"])
    finally:
        await admin.close()


def stop(state_dir: Path, timeout: float = 60) -> bool:
    """SIGTERM (controlled shutdown, flushes the log), SIGKILL after `timeout` s.
    Returns True if a running broker was stopped."""
    p = Paths.of(state_dir)
    pid = running_pid(state_dir)
    if pid is not None and not terminate(pid, timeout):
        log.warning("Kafka (pid %d) ignored SIGTERM for %.0f s and was killed", pid, timeout)
    p.pid.unlink(missing_ok=True)
    return pid is not None


def remove(state_dir: Path) -> None:
    """Delete the broker's data, config and cluster id (after stop): the next start is empty."""
    shutil.rmtree(Paths.of(state_dir).root, ignore_errors=True)
