"""`shardserver check` and the start-up AIO check, run as a user would: subprocesses.

`check` is pointed at fake /proc/sys trees (--proc-sys) to play a host with a
low fs.aio-max-nr; the server's own refusal to start is provoked without
touching the real /proc/sys by asking for more AIO events per shard
(--aio-queue-depth) than the host has left.
"""

import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from serverutil import ServerProcess, free_port

GOOD = {"fs/aio-max-nr": 1048576, "fs/aio-nr": 0, "fs/file-max": 2097152, "fs/nr_open": 1048576,
        "net/core/somaxconn": 4096, "net/ipv4/tcp_max_syn_backlog": 8192, "vm/swappiness": 1}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_proc_sys(root, overrides=None):
    values = {**GOOD, **(overrides or {})}
    for name, value in values.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
    return root


def shardserver(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "shardserver", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def read(root, name):
    return int((root / name).read_text().split()[0])


def test_check_passes_on_a_tuned_host(tmp_path):
    root = fake_proc_sys(tmp_path / "sys")
    done = shardserver("check", "--proc-sys", str(root), "--smp", "1", "--aio-queue-depth", "128")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for name in ("fs.aio-max-nr", "fs.file-max", "fs.nr_open", "net.core.somaxconn",
                 "net.ipv4.tcp_max_syn_backlog", "vm.swappiness"):
        assert re.search(rf"^{re.escape(name)}\s+\d+\s+[<>]= \d+\s+ok$", out, re.M), (name, out)
    assert "128 AIO events (1 shards x queue depth 128)" in out
    assert "1048576 available" in out
    assert re.search(r"^CPUs: \d+ online, this process may run on \d+", out, re.M)
    assert "pinning: shard 0 -> cpu" in out
    assert "open files (RLIMIT_NOFILE)" in out
    assert out.rstrip().endswith("result: ok")


def test_check_fails_on_a_low_aio_max_nr(tmp_path):
    root = fake_proc_sys(tmp_path / "sys", {"fs/aio-max-nr": 65536, "fs/aio-nr": 65000})
    done = shardserver("check", "--proc-sys", str(root), "--smp", "2", "--aio-queue-depth", "1024")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"^fs\.aio-max-nr\s+65536\s+>= 1048576\s+SHORT \(required\)$", out, re.M), out
    assert "why: each shard reserves" in out
    assert "FAIL AIO: the server needs 2048 AIO events (2 shards x queue depth 1024) but only 536" in out
    assert "sysctl/99-shardserver.conf" in out
    assert "result: 2 required check(s) failed" in out


def test_check_recommended_only_settings_do_not_fail(tmp_path):
    root = fake_proc_sys(tmp_path / "sys", {"vm/swappiness": 60, "net/core/somaxconn": 128})
    done = shardserver("check", "--proc-sys", str(root), "--smp", "1")
    assert done.returncode == 0, done.stdout
    assert re.search(r"^vm\.swappiness\s+60\s+<= 1\s+high \(recommended\)$", done.stdout, re.M)
    assert re.search(r"^net\.core\.somaxconn\s+128\s+>= 4096\s+short \(recommended\)$", done.stdout, re.M)


def test_check_reads_the_server_config(tmp_path):
    root = fake_proc_sys(tmp_path / "sys", {"fs/aio-nr": 1048000})
    config = tmp_path / "shardserver.yaml"
    config.write_text("smp: 1\naio_queue_depth: 4096\n")
    done = shardserver("check", "--proc-sys", str(root), "--config", str(config))
    assert done.returncode == 1
    assert "4096 AIO events (1 shards x queue depth 4096)" in done.stdout


def test_check_apply(tmp_path):
    root = fake_proc_sys(tmp_path / "sys", {"fs/aio-max-nr": 65536, "vm/swappiness": 60, "fs/file-max": 4194304})
    done = shardserver("check", "--proc-sys", str(root), "--smp", "1", "--apply")
    if os.geteuid() != 0:
        assert done.returncode == 1
        assert "apply: needs root" in done.stdout
        assert read(root, "fs/aio-max-nr") == 65536
        return
    assert done.returncode == 0, done.stdout
    assert "apply: set fs.aio-max-nr = 1048576 (was 65536)" in done.stdout
    assert "apply: set vm.swappiness = 1 (was 60)" in done.stdout
    assert read(root, "fs/aio-max-nr") == 1048576
    assert read(root, "vm/swappiness") == 1
    assert read(root, "fs/file-max") == 4194304, "a better value must never be lowered"
    assert "fs.file-max" not in "".join(l for l in done.stdout.splitlines() if l.startswith("apply: set"))


def test_check_usage_errors(tmp_path):
    assert shardserver("check", "--smp", "0").returncode == 2
    assert shardserver("check", "--no-such-flag").returncode == 2
    done = shardserver("check", "--config", str(tmp_path / "missing.yaml"))
    assert done.returncode == 2 and "cannot read config" in done.stderr


def test_check_on_this_host():
    """Against the real /proc/sys: the verdict must match what the kernel says."""
    try:
        max_nr = int(open("/proc/sys/fs/aio-max-nr").read())
    except OSError:
        pytest.skip("no /proc/sys/fs/aio-max-nr here")
    done = shardserver("check", "--smp", "1")
    assert re.search(rf"^fs\.aio-max-nr\s+{max_nr}\s", done.stdout, re.M), done.stdout
    assert done.returncode == (0 if max_nr >= 1048576 else 1), done.stdout


def aio_available():
    try:
        max_nr = int(open("/proc/sys/fs/aio-max-nr").read())
        nr = int(open("/proc/sys/fs/aio-nr").read())
    except OSError:
        pytest.skip("no Linux AIO accounting under /proc/sys")
    return max_nr - nr


def test_server_refuses_to_start_when_aio_is_short(tmp_path):
    depth = aio_available() // 2 + 1000        # 2 shards x depth > what the host has left
    port, metrics_port = free_port(), free_port()
    started = time.monotonic()
    done = shardserver("--smp", "2", "--data-dir", str(tmp_path / "data"), "--alternator-port", str(port),
                       "--prometheus-port", str(metrics_port), "--aio-queue-depth", str(depth))
    assert done.returncode == 2, done.stdout + done.stderr
    assert time.monotonic() - started < 20
    assert f"(2 shards x queue depth {depth})" in done.stderr
    assert "sysctl/99-shardserver.conf" in done.stderr
    assert "--developer-mode" in done.stderr
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)


def test_developer_mode_starts_anyway(tmp_path):
    depth = aio_available() // 2 + 1000
    proc = ServerProcess(tmp_path / "data", smp=2, extra=["--aio-queue-depth", str(depth)]).start()
    try:
        client = proc.client()
        assert client.list_tables()["TableNames"] == []
    finally:
        assert proc.stop() == 0, proc.log()
    log = proc.log()
    assert "continuing: --developer-mode" in log
    assert re.search(r"WARN\w* +supervisor: \[supervisor\] AIO: the server needs", log)


def test_log_lines_name_their_shard_and_requests_are_not_logged(tmp_path):
    proc = ServerProcess(tmp_path / "data", smp=2).start()
    try:
        client = proc.client()
        lines_before = len(proc.log().splitlines())
        client.create_table(TableName="logged", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
        for i in range(100):
            client.put_item(TableName="logged", Item={"pk": {"S": str(i)}})
            client.get_item(TableName="logged", Key={"pk": {"S": str(i)}})
        lines_after = len(proc.log().splitlines())
    finally:
        assert proc.stop() == 0
    assert lines_after - lines_before < 10, "no per-request logging by default"
    log = proc.log().splitlines()
    line = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) +"
                      r"(supervisor|shard \d+): \[[\w.]+\] ")
    assert all(line.match(entry) for entry in log if not entry.startswith(" ")), log
    for shard in (0, 1):
        assert any(f"shard {shard}: [shard] serving on" in entry for entry in log)
        assert any(f"shard {shard}: [shard] stopped" in entry for entry in log)

    quiet = ServerProcess(tmp_path / "quiet", smp=2, extra=["--log-level", "warning"]).start()
    try:
        quiet.client().list_tables()
    finally:
        assert quiet.stop() == 0
    assert not [entry for entry in quiet.log().splitlines() if " INFO " in entry]
