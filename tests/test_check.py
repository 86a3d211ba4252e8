"""`shardserver check` against a fake /proc/sys tree (never the real one)."""

import io
import os
import re

import pytest

from shardserver import check
from shardserver.check import SETTINGS, Host, aio_check, main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GOOD = {
    "fs.aio-max-nr": 1048576, "fs.aio-nr": 0, "fs.file-max": 9223372036854775807,
    "fs.nr_open": 1048576, "net.core.somaxconn": 4096,
    "net.ipv4.tcp_max_syn_backlog": 8192, "vm.swappiness": 1,
}


def fake_proc_sys(tmp_path, values):
    root = tmp_path / "proc-sys"
    for name, value in values.items():
        path = root.joinpath(*name.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
    return str(root)


def host(root, cpus=(0, 1, 2, 3), nofile=(1048576, 1048576), is_root=False, niceness=0, nice_limit=0):
    return Host(root=root, cpu_count=len(cpus), allowed_cpus=tuple(cpus), nofile=nofile,
                is_root=is_root, niceness=niceness, nice_limit=nice_limit)


def run(argv, h):
    out = io.StringIO()
    status = main(argv, host=h, out=out)
    return status, out.getvalue()


def read(root, name):
    with open(os.path.join(root, *name.split("."))) as f:
        return int(f.read())


def test_good_host_passes(tmp_path):
    status, text = run(["--smp", "4"], host(fake_proc_sys(tmp_path, GOOD)))
    assert status == 0, text
    assert "result: ok" in text
    assert "shard 3 -> cpu 3" in text
    for s in SETTINGS:
        assert s.name in text


def test_low_aio_max_nr_fails_and_names_the_sysctl_file(tmp_path):
    root = fake_proc_sys(tmp_path, {**GOOD, "fs.aio-max-nr": 65536})
    status, text = run(["--smp", "2"], host(root))
    assert status == 1
    assert re.search(r"fs\.aio-max-nr\s+65536\s+>= 1048576\s+SHORT \(required\)", text)
    assert "sysctl/99-shardserver.conf" in text


def test_aio_events_needed_vs_available(tmp_path):
    # 4 shards x 128 = 512 needed; only 1000 - 600 = 400 left.
    root = fake_proc_sys(tmp_path, {**GOOD, "fs.aio-max-nr": 1048576, "fs.aio-nr": 1048176})
    ok, message = aio_check(4, 128, root)
    assert not ok
    assert "512 AIO events" in message and "only 400 are available" in message
    assert "sysctl/99-shardserver.conf" in message
    ok, message = aio_check(3, 128, root)
    assert ok, message
    status, text = run(["--smp", "4", "--aio-queue-depth", "128"], host(root))
    assert status == 1
    assert "FAIL AIO" in text


def test_aio_check_without_aio_files_is_ok(tmp_path):
    ok, message = aio_check(2, 128, str(tmp_path / "empty"))
    assert ok and "thread fallback" in message


def test_recommended_only_settings_do_not_fail(tmp_path):
    root = fake_proc_sys(tmp_path, {**GOOD, "vm.swappiness": 60, "net.core.somaxconn": 128})
    status, text = run(["--smp", "2"], host(root))
    assert status == 0, text
    assert re.search(r"vm\.swappiness\s+60\s+<= 1\s+high \(recommended\)", text)
    assert "why:" in text


def test_too_many_shards_for_allowed_cpus(tmp_path):
    root = fake_proc_sys(tmp_path, GOOD)
    status, text = run(["--smp", "8"], host(root, cpus=(2, 3)))
    assert status == 1
    assert "only 2 allowed CPUs" in text
    status, text = run(["--smp", "8", "--overprovisioned"], host(root, cpus=(2, 3)))
    assert status == 0, text
    assert "pinning: off" in text


def test_default_smp_is_allowed_cpus(tmp_path):
    status, text = run([], host(fake_proc_sys(tmp_path, GOOD), cpus=(1, 5, 6)))
    assert status == 0
    assert "3 shard(s)" in text
    assert "(1,5-6)" in text
    assert "shard 0 -> cpu 1, shard 1 -> cpu 5, shard 2 -> cpu 6" in text


def test_open_file_limit(tmp_path):
    root = fake_proc_sys(tmp_path, GOOD)
    status, text = run(["--smp", "1"], host(root, nofile=(1024, 2048)))
    assert status == 1 and "FAIL open files" in text
    status, text = run(["--smp", "1"], host(root, nofile=(1024, 20000)))
    assert status == 0 and "short (recommended)" in text
    status, text = run(["--smp", "1"], host(root, nofile=(1024, 1048576)))
    assert status == 0 and "raises its soft limit" in text


def test_config_values_and_flags_override(tmp_path):
    root = fake_proc_sys(tmp_path, {**GOOD, "fs.aio-nr": 1048576 - 576})
    cfg = tmp_path / "shardserver.yaml"
    cfg.write_text("smp: 2\naio-queue-depth: 100\n")
    status, text = run(["--config", str(cfg)], host(root))
    assert status == 0, text
    assert "2 shard(s), AIO queue depth 100" in text
    status, text = run(["--config", str(cfg), "--aio-queue-depth", "300"], host(root))
    assert status == 1  # 600 needed > 576 available
    bad = tmp_path / "bad.yaml"
    bad.write_text("smp: [1, 2\n")
    assert run(["--config", str(bad)], host(root))[0] == 2


def test_apply_requires_root(tmp_path):
    root = fake_proc_sys(tmp_path, {**GOOD, "fs.aio-max-nr": 65536})
    status, text = run(["--apply", "--smp", "2"], host(root, is_root=False))
    assert status == 1
    assert "needs root" in text
    assert read(root, "fs.aio-max-nr") == 65536


def test_apply_as_root_writes_only_worse_values(tmp_path):
    values = {**GOOD, "fs.aio-max-nr": 65536, "vm.swappiness": 60,
              "net.core.somaxconn": 65535, "fs.aio-nr": 10}
    root = fake_proc_sys(tmp_path, values)
    status, text = run(["--apply", "--smp", "2"], host(root, is_root=True))
    assert status == 0, text
    assert read(root, "fs.aio-max-nr") == 1048576
    assert read(root, "vm.swappiness") == 1
    assert read(root, "net.core.somaxconn") == 65535  # better than recommended: untouched
    assert read(root, "fs.aio-nr") == 10
    assert "set fs.aio-max-nr = 1048576 (was 65536)" in text
    assert "set vm.swappiness = 1 (was 60)" in text
    assert "somaxconn = " not in text
    assert "result: ok" in text


def test_apply_raises_aio_max_nr_past_default_when_host_needs_it(tmp_path):
    root = fake_proc_sys(tmp_path, {**GOOD, "fs.aio-max-nr": 1048576, "fs.aio-nr": 1048500})
    status, text = run(["--apply", "--smp", "4"], host(root, is_root=True))
    assert status == 0, text
    assert read(root, "fs.aio-max-nr") == 1048500 + 4 * 128


def test_apply_reports_write_failures(tmp_path):
    root = fake_proc_sys(tmp_path, {**GOOD, "vm.swappiness": 60})
    os.chmod(os.path.join(root, "vm", "swappiness"), 0o444)
    os.chmod(os.path.join(root, "vm"), 0o555)
    try:
        if os.access(os.path.join(root, "vm", "swappiness"), os.W_OK):
            pytest.skip("running as root: permission bits do not stop writes")
        status, text = run(["--apply", "--smp", "1"], host(root, is_root=True))
    finally:
        os.chmod(os.path.join(root, "vm"), 0o755)
    assert status == 1
    assert "could not set vm.swappiness" in text


def test_apply_write_failure_via_missing_directory(tmp_path):
    # Works as root too: a sysctl whose directory does not exist cannot be written.
    values = {k: v for k, v in GOOD.items() if not k.startswith("vm.")}
    root = fake_proc_sys(tmp_path, values)
    status, text = run(["--apply", "--smp", "1"], host(root, is_root=True))
    assert status == 1
    assert "could not set vm.swappiness = 1" in text
    assert "UNKNOWN (cannot read)" in text


def test_sysctl_file_agrees_with_settings():
    path = os.path.join(REPO, "sysctl", "99-shardserver.conf")
    conf = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                conf[name.strip()] = int(value.strip())
    assert conf == {s.name: s.recommended for s in SETTINGS}
    assert conf["fs.aio-max-nr"] == 1048576
    # Every setting is explained in the file (a comment right above it).
    text = open(path).read()
    for s in SETTINGS:
        before = text[:text.index(f"\n{s.name} =")]
        assert before.rstrip().splitlines()[-1].startswith("#"), s.name


def test_usage_errors():
    with pytest.raises(SystemExit) as e:
        main(["--smp", "0"], host=Host(root="/nonexistent"), out=io.StringIO())
    assert e.value.code == 2


def test_real_host_is_only_read(monkeypatch):
    """Without --apply nothing is ever written, even as root on the real /proc/sys."""
    def no_writes(*a, **k):
        raise AssertionError("check wrote a sysctl without --apply")

    monkeypatch.setattr(check, "write_sysctl", no_writes)
    status, text = run([], Host())
    assert status in (0, 1)
    assert "fs.aio-max-nr" in text


def test_cpu_priority_the_shards_will_take(tmp_path):
    # Informational only: without the privilege the shards run at nice 0, and check still passes.
    root = fake_proc_sys(tmp_path, GOOD)
    status, text = run(["--smp", "1"], host(root))
    assert status == 0
    assert ("CPU priority: the shards will keep nice 0: nice -5 needs root, CAP_SYS_NICE or "
            "RLIMIT_NICE >= 25") in text
    as_root = run(["--smp", "1"], host(root, is_root=True))[1]
    assert "CPU priority: the shards take nice -5 (--shard-nice)" in as_root
    assert "take nice -5" in run(["--smp", "1"], host(root, nice_limit=25))[1]
    assert "take nice -2" in run(["--smp", "1", "--shard-nice", "-2"], host(root, nice_limit=22))[1]
    assert "keep nice 4, which this process was started at" in run(["--smp", "1"], host(root, niceness=4))[1]
    assert "keep nice 0 (--shard-nice 0)" in run(["--smp", "1", "--shard-nice", "0"], host(root))[1]
    assert "left alone (--overprovisioned)" in run(["--smp", "1", "--overprovisioned"], host(root))[1]
    cfg = tmp_path / "shardserver.yaml"
    cfg.write_text("shard_nice: -3\n")
    assert "take nice -3" in run(["--smp", "1", "--config", str(cfg)], host(root, is_root=True))[1]
