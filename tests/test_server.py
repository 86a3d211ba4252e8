"""The server as a process tree: pinning, restarts, clean shutdown, configuration."""

import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
from botocore.exceptions import ClientError

from conftest import create_table
from serverutil import ServerProcess, free_port


def shm_segments() -> set[str]:
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()


def missing_keys(ddb, table: str, keys: list[str]) -> list[str]:
    """The partition keys of ``keys`` that ``table`` does not hold (BatchGetItem, unprocessed retried)."""
    missing = []
    for start in range(0, len(keys), 100):
        chunk = [{"pk": {"S": k}} for k in keys[start:start + 100]]
        request = {table: {"Keys": chunk}}
        found = set()
        while request:
            reply = ddb.batch_get_item(RequestItems=request)
            found |= {item["pk"]["S"] for item in reply["Responses"].get(table, [])}
            request = reply.get("UnprocessedKeys")
        missing += [k["pk"]["S"] for k in chunk if k["pk"]["S"] not in found]
    return missing


def test_shards_pinned_to_distinct_cpus(server):
    pids = server.shard_pids()
    assert len(pids) == 2
    affinities = [psutil.Process(p).cpu_affinity() for p in pids]
    assert all(len(a) == 1 for a in affinities)
    if len(os.sched_getaffinity(0)) >= 2:
        assert affinities[0] != affinities[1]


def test_keys_spread_over_all_shards(server, ddb, hash_table):
    from shardserver.shard.routing import shard_of_key
    owners = {shard_of_key({"S": f"spread{i}"}, 2)[0] for i in range(100)}
    assert owners == {0, 1}
    for i in range(100):
        ddb.put_item(TableName=hash_table, Item={"pk": {"S": f"spread{i}"}})
    for i in range(100):
        assert "Item" in ddb.get_item(TableName=hash_table, Key={"pk": {"S": f"spread{i}"}})


def test_kill_one_shard_restarts_it_and_loses_nothing(tmp_path):
    srv = ServerProcess(tmp_path / "data", smp=2, extra=["--commitlog-sync", "batch"]).start()
    try:
        ddb = srv.client()
        create_table(ddb, "killme")
        for i in range(200):
            ddb.put_item(TableName="killme", Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
        victim, survivor = srv.shard_pids()
        stop = threading.Event()
        survivor_errors = []

        def hammer():
            # a client pinned to a live connection keeps working while the other shard restarts
            client = srv.client(retries=20)
            while not stop.is_set():
                try:
                    client.list_tables()
                except Exception as exc:     # asserted below
                    survivor_errors.append(exc)
                time.sleep(0.01)

        thread = threading.Thread(target=hammer)
        thread.start()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = srv.shard_pids()
            if len(pids) == 2 and victim not in pids and srv.all_shards_up():
                break
            time.sleep(0.1)
        else:
            pytest.fail("shard was not restarted:\n" + srv.log())
        stop.set()
        thread.join()
        assert not survivor_errors
        assert survivor in srv.shard_pids()
        for i in range(200):
            item = ddb.get_item(TableName="killme", Key={"pk": {"S": f"k{i}"}})["Item"]
            assert item["v"] == {"N": str(i)}
    finally:
        assert srv.stop() == 0


def test_all_shards_killed_at_once_come_back_promptly(tmp_path):
    """A dead shard never acknowledges another's restart: none may wait for one (it took 5 s)."""
    srv = ServerProcess(tmp_path / "data", smp=2).start()
    try:
        ddb = srv.client()
        create_table(ddb, "killall")
        for i in range(50):
            ddb.put_item(TableName="killall", Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
        victims = srv.shard_pids()
        started = time.monotonic()
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        while time.monotonic() - started < 30:
            pids = srv.shard_pids()
            if len(pids) == 2 and not set(pids) & set(victims) and srv.all_shards_up():
                break
            time.sleep(0.05)
        else:
            pytest.fail("shards were not restarted:\n" + srv.log())
        assert time.monotonic() - started < 4.0, srv.log()
        assert "did not acknowledge" not in srv.log()
        for i in range(50):
            assert ddb.get_item(TableName="killall", Key={"pk": {"S": f"k{i}"}})["Item"]["v"] == {"N": str(i)}
    finally:
        assert srv.stop() == 0


def test_sigterm_stops_everything_cleanly(tmp_path):
    srv = ServerProcess(tmp_path / "data", smp=2).start()
    # The supervisor names its segments after its pid: other servers running meanwhile do not count.
    mine = f"shardserver-{srv.proc.pid}-"
    children = srv.shard_pids()
    assert any(name.startswith(mine) for name in shm_segments()), "no shared memory segments were created"
    assert srv.stop() == 0
    for pid in children:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not [name for name in shm_segments() if name.startswith(mine)], "shared memory left behind"


def test_sigterm_under_load_answers_no_500_and_keeps_every_acknowledged_write(tmp_path):
    """A clean stop under load: every request either gets a real answer or a retryable refusal
    (503, or the connection closed before an answer), never a 500 from storage already closed
    (keep-alive connections used to be served after it); and every 200 survives the restart."""
    srv = ServerProcess(tmp_path / "data", smp=2).start()
    ddb = srv.client()
    create_table(ddb, "drain")
    acknowledged, statuses = [], []
    stop = threading.Event()

    def writer(w):
        client = srv.client(retries=0)
        i = 0
        while not stop.is_set():
            key = f"w{w}-{i}"
            i += 1
            try:
                if i % 2:
                    client.put_item(TableName="drain", Item={"pk": {"S": key}})
                else:
                    client.update_item(TableName="drain", Key={"pk": {"S": key}}, UpdateExpression="SET v = :v",
                                       ExpressionAttributeValues={":v": {"N": "1"}})
            except ClientError as exc:
                statuses.append(exc.response["ResponseMetadata"]["HTTPStatusCode"])
                continue
            except Exception:
                time.sleep(0.01)        # the connection was closed or refused: the server is stopping
                continue
            acknowledged.append(key)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(12)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    status = srv.stop()
    stop.set()
    for thread in threads:
        thread.join()
    log = srv.log()
    assert status == 0, log
    assert len(acknowledged) > 100
    assert 500 not in statuses and "internal error" not in log, log
    srv = ServerProcess(tmp_path / "data", smp=2, port=srv.port).start()
    try:
        assert missing_keys(srv.client(), "drain", acknowledged) == []
    finally:
        assert srv.stop() == 0


def test_data_survives_a_clean_restart(tmp_path):
    srv = ServerProcess(tmp_path / "data", smp=2).start()
    ddb = srv.client()
    create_table(ddb, "persist", range_key=("sk", "N"))
    for i in range(300):
        ddb.put_item(TableName="persist", Item={"pk": {"S": f"p{i % 7}"}, "sk": {"N": str(i)}, "v": {"S": "x" * i}})
    ddb.delete_item(TableName="persist", Key={"pk": {"S": "p0"}, "sk": {"N": "0"}})
    assert srv.stop() == 0
    srv = ServerProcess(tmp_path / "data", smp=2, port=srv.port).start()
    try:
        ddb = srv.client()
        table = ddb.describe_table(TableName="persist")["Table"]
        assert table["ItemCount"] == 299
        for i in range(1, 300):
            item = ddb.get_item(TableName="persist", Key={"pk": {"S": f"p{i % 7}"}, "sk": {"N": str(i)}})["Item"]
            assert item["v"]["S"] == "x" * i
        assert "Item" not in ddb.get_item(TableName="persist", Key={"pk": {"S": "p0"}, "sk": {"N": "0"}})
    finally:
        assert srv.stop() == 0


def test_whole_server_kill9_loses_no_acknowledged_write(tmp_path):
    srv = ServerProcess(tmp_path / "data", smp=2, extra=["--commitlog-sync", "batch"]).start()
    ddb = srv.client()
    create_table(ddb, "crash")
    acknowledged = []
    for i in range(300):
        ddb.put_item(TableName="crash", Item={"pk": {"S": f"c{i}"}})
        acknowledged.append(i)
    srv.kill()
    srv = ServerProcess(tmp_path / "data", smp=2, port=srv.port).start()
    try:
        ddb = srv.client()
        missing = [i for i in acknowledged
                   if "Item" not in ddb.get_item(TableName="crash", Key={"pk": {"S": f"c{i}"}})]
        assert missing == []
    finally:
        assert srv.stop() == 0


def test_periodic_mode_kill9_loses_no_acknowledged_write(tmp_path):
    """Periodic mode writes records to the page cache once per loop iteration, before any answer
    or ring reply leaves: a process crash right after the answers loses none of them."""
    srv = ServerProcess(tmp_path / "data", smp=2).start()
    ddb = srv.client()
    create_table(ddb, "crashp")
    acknowledged = []
    stop = threading.Event()

    def writer(w):
        client = srv.client(retries=0)
        i = 0
        while not stop.is_set():
            try:
                client.put_item(TableName="crashp", Item={"pk": {"S": f"w{w}-{i}"}})
            except Exception:
                return          # the server is gone
            acknowledged.append(f"w{w}-{i}")
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    srv.kill()
    stop.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged) > 200
    srv = ServerProcess(tmp_path / "data", smp=2, port=srv.port).start()
    try:
        assert missing_keys(srv.client(), "crashp", acknowledged) == []
    finally:
        assert srv.stop() == 0


def test_shards_stop_cleanly_when_the_supervisor_is_killed(tmp_path):
    """A harness that ends the server with Popen.kill() kills only the supervisor: its shards must
    not serve on unwatched, holding the port and the data directory for the next server."""
    srv = ServerProcess(tmp_path / "data", smp=2).start()
    ddb = srv.client()
    create_table(ddb, "orphans")
    for i in range(50):
        ddb.put_item(TableName="orphans", Item={"pk": {"S": f"o{i}"}})
    shards = [psutil.Process(pid) for pid in srv.shard_pids()]
    srv.proc.kill()
    srv.proc.wait()
    srv.log_file.close()
    gone, alive = psutil.wait_procs(shards, timeout=30)
    for process in alive:
        process.kill()
    assert not alive, "shards outlived their supervisor"
    srv = ServerProcess(tmp_path / "data", smp=2, port=srv.port).start()
    try:
        ddb = srv.client()
        assert all("Item" in ddb.get_item(TableName="orphans", Key={"pk": {"S": f"o{i}"}}) for i in range(50))
    finally:
        assert srv.stop() == 0


def test_changing_smp_is_refused_clearly(tmp_path):
    srv = ServerProcess(tmp_path / "data", smp=2).start()
    assert srv.stop() == 0
    result = subprocess.run([sys.executable, "-m", "shardserver", "--smp", "1", "--developer-mode",
                             "--data-dir", str(tmp_path / "data"), "--alternator-port", str(free_port()),
                             "--prometheus-port", "0"], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "written by 2 shards" in result.stderr and "--smp 2" in result.stderr


def test_a_second_server_on_the_same_data_directory_is_refused(tmp_path):
    """Even on another port (or the same one: the API listens with SO_REUSEPORT)."""
    first = ServerProcess(tmp_path / "data", smp=2).start()
    try:
        for port in (free_port(), first.port):
            result = subprocess.run([sys.executable, "-m", "shardserver", "--smp", "2", "--developer-mode",
                                     "--data-dir", str(tmp_path / "data"), "--alternator-port", str(port),
                                     "--prometheus-port", "0"], capture_output=True, text=True, timeout=30)
            assert result.returncode == 2
            assert "is in use by another shardserver" in result.stderr
            assert f"pid {first.proc.pid}" in result.stderr
        first.client().list_tables()        # the first one never noticed
    finally:
        assert first.stop() == 0
    # Released at exit, a kill -9 included.
    second = ServerProcess(tmp_path / "data", smp=2).start()
    second.kill()
    third = ServerProcess(tmp_path / "data", smp=2).start()
    assert third.stop() == 0


def test_a_second_server_on_a_port_in_use_is_refused(tmp_path):
    """Shards listen with SO_REUSEPORT: a second server on another data directory would bind the
    same port and the kernel would split connections between two sets of tables."""
    first = ServerProcess(tmp_path / "one", smp=2).start()
    try:
        result = subprocess.run([sys.executable, "-m", "shardserver", "--smp", "2", "--developer-mode",
                                 "--data-dir", str(tmp_path / "two"), "--alternator-port", str(first.port),
                                 "--prometheus-port", "0"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, result.stderr
        assert f"port {first.port} is in use" in result.stderr
        result = subprocess.run([sys.executable, "-m", "shardserver", "--smp", "2", "--developer-mode",
                                 "--data-dir", str(tmp_path / "two"), "--alternator-port", str(free_port()),
                                 "--prometheus-port", str(first.prometheus_port)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, result.stderr
        assert f"port {first.prometheus_port} is in use" in result.stderr and "(--prometheus-port)" in result.stderr
        first.client().list_tables()        # the first one never noticed
    finally:
        assert first.stop() == 0
    # Free again once the first one stopped (its connections' TIME_WAIT does not count).
    again = ServerProcess(tmp_path / "two", smp=2, port=first.port).start()
    assert again.stop() == 0


def test_yaml_config_and_flags(tmp_path):
    port = free_port()
    config = tmp_path / "shardserver.yaml"
    config.write_text(f"alternator_port: {port}\ncommitlog_sync: batch\nsmp: 1\noverprovisioned: true\n"
                      f"prometheus_port: 0\ndeveloper_mode: true\ndata_dir: {tmp_path / 'data'}\n")
    proc = subprocess.Popen([sys.executable, "-m", "shardserver", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        srv = ServerProcess(tmp_path / "data", smp=1, port=port)
        srv.proc = proc
        srv.log_path = os.devnull
        srv.wait_healthy()
        assert len(srv.shard_pids()) == 1
        child = psutil.Process(srv.shard_pids()[0])
        assert len(child.cpu_affinity()) == len(os.sched_getaffinity(0))   # overprovisioned: not pinned
        srv.client().list_tables()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("no_such_option: 1\n")
    result = subprocess.run([sys.executable, "-m", "shardserver", "--config", str(bad)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "no_such_option" in result.stderr


def _may_lower_niceness() -> bool:
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return os.geteuid() == 0 or soft > 20


@pytest.mark.parametrize("extra, expected", [
    ([], -5),                                   # a pinned shard takes a server's priority
    (["--shard-nice", "-3"], -3),
    (["--shard-nice", "0"], 0),                 # 0 keeps what it inherited
    (["--overprovisioned"], 0),                 # a shared machine: no pinning, no priority
])
def test_shards_take_cpu_priority_unless_told_not_to(tmp_path, extra, expected):
    srv = ServerProcess(tmp_path / "data", smp=1, extra=extra).start()
    try:
        nice = psutil.Process(srv.shard_pids()[0]).nice()
        assert nice == (expected if _may_lower_niceness() else 0)
        srv.client().list_tables()
    finally:
        assert srv.stop() == 0


def test_a_niceness_someone_chose_is_kept(tmp_path):
    srv = ServerProcess(tmp_path / "data", smp=1)
    os.makedirs(srv.data_dir)
    srv.proc = subprocess.Popen([sys.executable, "-m", "shardserver", "--smp", "1", "--developer-mode",
                                 "--data-dir", srv.data_dir, "--alternator-port", str(srv.port),
                                 "--prometheus-port", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=lambda: os.nice(3))
    srv.log_path = os.devnull
    try:
        srv.wait_healthy()
        assert psutil.Process(srv.shard_pids()[0]).nice() == 3
    finally:
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(60) == 0


def test_shard_nice_out_of_range_is_refused(tmp_path):
    result = subprocess.run([sys.executable, "-m", "shardserver", "--developer-mode", "--shard-nice", "-21",
                             "--data-dir", str(tmp_path / "d"), "--prometheus-port", "0",
                             "--alternator-port", str(free_port())], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--shard-nice must be between -20 and 19" in result.stderr
