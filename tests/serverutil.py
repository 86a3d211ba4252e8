"""Starting and stopping real shardserver processes for tests.

Every server runs on 127.0.0.1 with free ports and its own data directory;
only the pids started here are signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
from botocore.config import Config as BotoConfig


def _die_with_parent() -> None:
    """In the server's process: get SIGTERM when the test process dies, so none is left behind."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, data_dir, smp: int = 2, extra: list[str] | None = None, port: int | None = None,
                 prometheus_port: int | None = None):
        self.data_dir = str(data_dir)
        self.smp = smp
        self.port = port or free_port()
        self.prometheus_port = prometheus_port or free_port()
        self.extra = list(extra or [])
        self.proc = None
        self.log_path = os.path.join(self.data_dir, "server.log")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        os.makedirs(self.data_dir, exist_ok=True)
        args = [sys.executable, "-m", "shardserver", "--smp", str(self.smp), "--developer-mode",
                "--data-dir", self.data_dir, "--alternator-port", str(self.port),
                "--prometheus-port", str(self.prometheus_port)] + self.extra
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if self.all_shards_up():
                return
            time.sleep(0.05)
        raise RuntimeError(f"server not healthy after {timeout}s:\n{self.log()}")

    def all_shards_up(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=1) as r:
                if not r.read().startswith(b"healthy"):
                    return False
        except OSError:
            return False
        pids = self.shard_pids()
        return len(pids) == self.smp and all(self._listening(p) for p in pids)

    def _listening(self, pid: int) -> bool:
        import psutil
        try:
            return any(c.status == "LISTEN" and c.laddr.port == self.port
                       for c in psutil.Process(pid).net_connections("tcp"))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def shard_pids(self) -> list[int]:
        import psutil
        try:
            # the supervisor's other child is multiprocessing's resource tracker
            return [c.pid for c in psutil.Process(self.proc.pid).children()
                    if "resource_tracker" not in " ".join(c.cmdline())]
        except psutil.NoSuchProcess:
            return []

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-20000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self.log_file.close()

    def kill(self) -> None:
        """SIGKILL the supervisor and its shards (a whole-server crash)."""
        for pid in self.shard_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.kill()
        self.proc.wait()
        self.log_file.close()

    def client(self, **kwargs):
        return make_client(self.endpoint, **kwargs)

    def resource(self):
        return boto3.resource("dynamodb", endpoint_url=self.endpoint, region_name="us-east-1",
                              aws_access_key_id="x", aws_secret_access_key="y",
                              config=BotoConfig(retries={"max_attempts": 10, "mode": "standard"}))


def make_client(endpoint: str, retries: int = 10, **kwargs):
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=kwargs.pop("key", "x"),
                        aws_secret_access_key=kwargs.pop("secret", "y"),
                        config=BotoConfig(retries={"max_attempts": retries, "mode": "standard"},
                                          connect_timeout=5, read_timeout=30), **kwargs)
