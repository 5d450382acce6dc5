"""Generation on a Dask cluster (LocalCluster, real worker processes): the same content digest as the
process pool for 1 and 2 workers; a worker killed mid-task is replaced, its task rerun, the digest
unchanged and no part duplicated or left half-written; ``registry create --cluster local:2`` end to
end; a bad --cluster is exit 2 before anything is generated."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from synthreg import faults
from synthreg.generators.engine import generate
from synthreg.generators.spec_io import parse_spec


@pytest.fixture(scope="module")
def spec(small_spec_text: str) -> Any:
    """SMALL_SPEC at 150k users and 400k orders: several segments per table."""
    data = yaml.safe_load(small_spec_text)
    data["tables"]["users"]["rows"], data["tables"]["orders"]["rows"] = 150_000, 400_000
    return parse_spec(data, "dask.yaml")


def _parts(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def test_pool_and_local_clusters_of_one_and_two_workers_give_one_digest(spec: Any, tmp_path: Path) -> None:
    pool = generate(spec, tmp_path / "pool", workers=2)
    one = generate(spec, tmp_path / "one", cluster="local:1")
    two = generate(spec, tmp_path / "two", cluster="local:2")
    assert pool.content_digest == one.content_digest == two.content_digest
    assert two.params["cluster"] == "local:2" and two.rows == pool.rows == {
        "users": 150_000,
        "orders": 400_000,
    }
    assert _parts(tmp_path / "two") == _parts(tmp_path / "pool")  # segments sized for 2 workers alike
    assert len(_parts(tmp_path / "two")) >= 4


def test_a_worker_killed_mid_task_is_retried_and_nothing_changes(
    spec: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "killed-once"
    monkeypatch.setenv(faults.KILL_AT, "engine.segment.orders.1")  # read by the worker processes
    monkeypatch.setenv(faults.KILL_ONCE, str(flag))
    killed = generate(spec, tmp_path / "killed", cluster="local:2")
    assert flag.exists()  # a worker did die in the middle of writing orders part 1
    monkeypatch.delenv(faults.KILL_AT)
    clean = generate(spec, tmp_path / "clean", workers=2)
    assert killed.content_digest == clean.content_digest
    assert _parts(tmp_path / "killed") == _parts(tmp_path / "clean")  # no duplicate, no .tmp left


def test_create_with_a_cluster_end_to_end(workspace: Path, small_spec: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from synthreg.cli.app import app
    from synthreg.generators.spec_io import load_spec

    base = ["-C", str(workspace), "create", "small", "--spec", str(small_spec)]
    on_dask = CliRunner().invoke(app, [*base, "--cluster", "local:2", "--json"])
    assert on_dask.exit_code == 0, on_dask.output
    made = json.loads(on_dask.stdout)
    pool = generate(load_spec(small_spec), tmp_path / "pool", workers=2)
    assert made["content_digest"] == pool.content_digest and made["version"] == 1
    manifest = json.loads((workspace / made["path"] / "manifest.json").read_text())
    assert manifest["params"]["cluster"] == "local:2"
    bad = CliRunner().invoke(app, [*base, "--cluster", "somewhere"])
    assert bad.exit_code == 2 and "tcp://HOST:PORT" in bad.stderr
    assert not list((workspace / "data/small").glob("v2"))


def test_group_rules_run_as_tasks_on_a_remote_cluster(
    small_spec_text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a cluster reached by its address (workers sharing this filesystem), the group rules'
    split, reduce and apply tasks run on the cluster's workers; same digest as the pool."""
    from distributed import LocalCluster

    from synthreg.generators import group_rules

    data = yaml.safe_load(small_spec_text)
    data["tables"]["users"]["rows"], data["tables"]["orders"]["rows"] = 150_000, 400_000
    data["tables"]["orders"]["constraints"] = [
        {"kind": "max_rows_per_group", "group_by": ["user_id"], "limit": 2, "action": "drop"}
    ]
    capped = parse_spec(data, "capped.yaml")
    pool = generate(capped, tmp_path / "pool", workers=2)
    monkeypatch.setattr(group_rules, "BUCKET_ROWS", 150_000)  # 3 buckets of the 400k orders
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as cluster:
        remote = generate(capped, tmp_path / "remote", cluster=cluster.scheduler_address)
        ran = set(cluster.scheduler.task_prefixes)
    assert remote.content_digest == pool.content_digest
    assert remote.params["constraints"]["orders"]["max_rows_per_group#0"]["rows_changed"] > 0
    assert {"synthreg-groups-split", "synthreg-groups-reduce", "synthreg-groups-apply"} <= ran, ran
    assert not (tmp_path / "remote" / ".groups").exists()


def test_a_worker_killed_while_rewriting_a_part_is_retried_and_nothing_changes(
    small_spec_text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group rules' apply task SIGKILLed mid-write on a cluster: rerun by the scheduler, the
    same digest as the pool's, and no half-written attempt left beside the parts."""
    from distributed import LocalCluster

    data = yaml.safe_load(small_spec_text)
    data["tables"]["users"]["rows"], data["tables"]["orders"]["rows"] = 150_000, 400_000
    data["tables"]["orders"]["constraints"] = [
        {"kind": "sum_limit", "group_by": ["user_id"], "column": "amount", "limit": 60, "action": "cap"}
    ]
    capped = parse_spec(data, "capped.yaml")
    pool = generate(capped, tmp_path / "pool", workers=2)
    flag = tmp_path / "killed-once"
    monkeypatch.setenv(faults.KILL_AT, "groups.apply.orders.1")  # read by the worker processes
    monkeypatch.setenv(faults.KILL_ONCE, str(flag))
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as cluster:
        killed = generate(capped, tmp_path / "killed", cluster=cluster.scheduler_address)
    assert flag.exists()  # a worker did die after writing a row group of orders part 1
    assert killed.params["constraints"]["orders"]["sum_limit#0"]["rows_changed"] > 0
    assert killed.content_digest == pool.content_digest
    left = _parts(tmp_path / "killed")
    assert left and all(p.startswith("tables/") and p.endswith(".parquet") for p in left), left


def test_a_remote_cluster_whose_worker_runs_other_code_is_refused_before_any_task(
    spec: Any, tmp_path: Path
) -> None:
    """A worker started (``dask worker``) from a synthreg checkout with one edited line, the same
    release number: the create's generation is refused with exit 2, naming the worker and both
    code digests, before any part is written; the worker's answer comes from a probe sent by
    value, so it needs no synthreg of its own to give it."""
    import os
    import shutil
    import subprocess
    import sys

    from distributed import LocalCluster

    import synthreg
    from synthreg.compute.dask import environment
    from synthreg.errors import UsageError

    alt = tmp_path / "checkout"
    shutil.copytree(
        Path(synthreg.__file__).parent, alt / "synthreg", ignore=shutil.ignore_patterns("__pycache__")
    )
    edited = alt / "synthreg" / "generators" / "engine.py"
    edited.write_text(edited.read_text() + "\n# edited on the worker's machine\n")
    path = os.pathsep.join(p for p in (str(alt), os.environ.get("PYTHONPATH", "")) if p)
    out = tmp_path / "out"
    with LocalCluster(n_workers=0, processes=True, dashboard_address=None, silence_logs=40) as cluster:
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
             "--nthreads", "1", "--no-dashboard"],
            env={**os.environ, "PYTHONPATH": path},
            cwd=tmp_path,  # not the project's folder, which ``-m`` would put first on sys.path
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            with pytest.raises(UsageError) as caught:
                generate(spec, out, cluster=cluster.scheduler_address)
        finally:
            worker.terminate()
            worker.wait(30)
    said, ours = str(caught.value), environment()["synthreg"]
    assert caught.value.exit_code == 2 and "1 of 1 workers run other software" in said, said
    assert f"(here {ours})" in said and said.count("0.1.0 (code ") == 2, said
    assert "synthreg 0.1.0 (code " in said and ours.startswith("0.1.0 (code ")
    assert "numpy" not in said  # only what differs is named
    assert not list(out.rglob("*.parquet"))


def test_a_remote_cluster_without_workers_is_refused(
    spec: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduler with no worker would take the tasks and never run them: refused (exit 2)."""
    from distributed import LocalCluster

    from synthreg.compute import dask as on_dask
    from synthreg.errors import UsageError

    monkeypatch.setattr(on_dask, "WORKER_WAIT_S", 0.5)
    with (
        LocalCluster(n_workers=0, processes=True, dashboard_address=None, silence_logs=40) as cluster,
        pytest.raises(UsageError, match="the scheduler has no worker") as caught,
    ):
        generate(spec, tmp_path / "out", cluster=cluster.scheduler_address)
    assert caught.value.exit_code == 2 and "dask worker tcp://" in str(caught.value)
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_doctor_reports_the_configured_cluster_and_a_cluster_without_workers(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[compute] scheduler`` is a backend ``registry doctor`` checks: with workers that run this
    machine's software it answers (their count); a scheduler without workers is a problem whose
    detail says to start one."""
    from distributed import LocalCluster

    import synthreg
    from synthreg.integrations import probes

    monkeypatch.setattr(probes, "TIMEOUT_S", 0.5)
    settings = workspace / "registry.toml"
    text = settings.read_text()
    for workers in (2, 0):
        with LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        ) as cluster:
            settings.write_text(f'{text}\n[compute]\nscheduler = "{cluster.scheduler_address}"\n')
            found = synthreg.open(workspace).doctor().to_dict()
        backends = {b["backend"]: b for b in found["backends"]}
        if workers:
            assert found["healthy"] and backends["cluster"]["ok"], found
            assert backends["cluster"]["detail"] == "2 worker(s), each running this machine's software"
        else:
            assert not found["healthy"] and not backends["cluster"]["ok"]
            problem = next(p for p in found["problems"] if p["kind"] == "backend")
            said = f"cluster at {cluster.scheduler_address}: the scheduler has no worker"
            assert problem["detail"].startswith(said), problem
            assert "dask worker" in problem["detail"]


_MAPPED = """
import ctypes, json, sys
import numpy as np
from synthreg.compute.dask import steady_malloc

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                              "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info

def mapped():  # bytes in mmapped chunks while a second 8 MiB array lives, after one was freed
    np.ones(1 << 20)
    before = libc.mallinfo2().hblkhd
    kept = np.ones(1 << 20)
    return libc.mallinfo2().hblkhd - before + 0 * kept.size

first = mapped()
steadied = steady_malloc()
print(json.dumps([first, steadied, mapped()]))
"""


@pytest.mark.parametrize("value", ["65536", None, "1000000"])
def test_steady_malloc_undoes_dasks_default_and_nothing_else(value: str | None) -> None:
    """With Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` in a process's environment, glibc maps every
    8 MiB array afresh (``mallinfo2().hblkhd`` grows by it while it lives); ``steady_malloc``
    then sets its thresholds and the next array comes from the heap. Without the variable the
    dynamic threshold already moved past the array; a value someone chose is left alone (the
    array stays mapped above that threshold)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    if value is not None:
        env["MALLOC_TRIM_THRESHOLD_"] = value
    done = subprocess.run(
        [sys.executable, "-c", _MAPPED], env=env, capture_output=True, text=True, check=True
    )
    first, steadied, after = json.loads(done.stdout)
    if value == "65536":
        assert (first >= 8 << 20, steadied, after) == (True, True, 0)
    elif value is None:
        assert (first, steadied, after) == (0, False, 0)
    else:
        assert (first >= 8 << 20, steadied, after >= 8 << 20) == (True, False, True)


def test_tasks_on_a_cluster_run_after_steady_malloc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks go through ``_in_worker``: on a worker with Dask's default variable (a cluster reached
    by its address) ``steady_malloc`` has run and set glibc's thresholds before the task; a task
    submitted plainly there has not. A ``local:N`` cluster's workers do not get the variable, nor
    does this process from their nanny."""
    import os

    from distributed import Client, LocalCluster

    from synthreg.compute.dask import mapper, run_tasks

    def seen(_: int) -> tuple[str | None, Any]:  # pickled by value
        import os
        import sys

        module = sys.modules.get("synthreg.compute.dask")
        called = module.steady_malloc.cache_info().currsize if module else 0
        return os.environ.get("MALLOC_TRIM_THRESHOLD_"), called and module.steady_malloc()

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as cluster:
        with Client(cluster) as client:
            plain = client.submit(seen, 0, pure=False).result()
        with mapper(cluster.scheduler_address) as run:
            [steady] = run(seen, [(0,)])
    assert plain == ("65536", 0) and steady == ("65536", True), (plain, steady)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # other tests' nannies set it here
    [local] = run_tasks("local:1", seen, [(0,)])
    assert local == (None, False), local
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ


def test_what_a_worker_runs_is_compared_package_by_package() -> None:
    from synthreg.compute.dask import differences

    ours = {"python": "3.11", "numpy": "2.4.6", "duckdb": None}
    assert differences(dict(ours), ours) == []
    assert differences({"python": "3.12", "numpy": None, "duckdb": "2.0.1"}, ours) == [
        "python 3.12 (here 3.11)",
        "numpy not installed (here 2.4.6)",
        "duckdb 2.0.1 (here not installed)",
    ]


def test_a_failed_round_of_tasks_lets_the_running_ones_end_and_cancels_the_rest(tmp_path: Path) -> None:
    """``mapper``: when one task of a round fails, the round waits (bounded) for the tasks already
    running before it raises, and cancels those not started yet; so the caller's cleanup comes
    after everything its tasks write."""
    import time

    from distributed import LocalCluster

    from synthreg.compute.dask import mapper

    def task(i: int, folder: str) -> int:  # pickled by value: the workers need not import tests
        import pathlib
        import time

        if i == 0:
            raise RuntimeError("refused")
        time.sleep(2)
        pathlib.Path(folder, str(i)).write_text("written after the failure")
        return i

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        ) as cluster,
        mapper(cluster.scheduler_address) as run,
    ):
        with pytest.raises(RuntimeError, match="refused"):
            run(task, [(i, str(tmp_path)) for i in range(10)])
        written = sorted(p.name for p in tmp_path.iterdir())
        assert "1" in written  # running when task 0 failed: waited for
        time.sleep(3)
        # the 9 others would take ~9 s on the 2 workers: those not started were cancelled
        assert sorted(p.name for p in tmp_path.iterdir()) == written and len(written) < 9, written


def test_checks_by_buckets_run_as_tasks_on_a_remote_cluster(
    spec: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uniqueness of a key that does not increase and a foreign key whose parent keys are no run,
    counted by buckets: on a cluster reached by its address, the split and count tasks run on
    its workers (pieces in ``.checks`` beside the tables folder, removed after); the verdicts,
    counts and first examples are those of the same checks in this process, and a whole
    ``validate_tables(cluster=...)`` gives what it gives without one."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from distributed import LocalCluster

    from synthreg.generators import group_rules
    from synthreg.validators.checks import fk_by_buckets, unique_check
    from synthreg.validators.parts import open_parts
    from synthreg.validators.plan import Planned
    from synthreg.validators.rules import _ms
    from synthreg.validators.suite import validate_tables

    rng = np.random.default_rng(5)
    tables = tmp_path / "v" / "tables"
    keys = rng.permutation(np.arange(0, 60_000, 3))  # 20,000 parent keys with gaps, shuffled
    columns = {
        "p": ("k", pa.array([f"id-{v}" for v in keys.tolist()]), 5_000),
        "c": ("fk", pa.array([f"id-{v}" for v in rng.integers(0, 60_000, 24_000).tolist()]), 8_000),
    }
    for name, (column, values, size) in columns.items():
        (tables / name).mkdir(parents=True)
        for part in range(len(values) // size):
            pq.write_table(
                pa.table({column: values.slice(part * size, size)}), tables / name / f"part-{part}.parquet"
            )
    parent, child = open_parts(tables, "p"), open_parts(tables, "c")
    planned = Planned("expect_column_values_to_be_unique", "fk", {"column": "fk"}, None, "unique")
    monkeypatch.setattr(group_rules, "BUCKET_ROWS", 6_000)  # several buckets, decided here
    here = (unique_check(child, planned), fk_by_buckets(child, "fk", parent, "k"))
    folders: list[Path] = []
    real_scratch = group_rules._scratch

    @contextlib.contextmanager
    def scratch(*args: Any) -> Any:
        with real_scratch(*args) as folder:
            folders.append(folder)
            yield folder

    monkeypatch.setattr(group_rules, "_scratch", scratch)
    # and a whole validation: users' first part's keys doubled (repeated across parts, with gaps)
    generate(spec, tmp_path / "gen", workers=2)
    first = sorted((tmp_path / "gen" / "tables" / "users").glob("part-*.parquet"))[0]
    users = pq.read_table(first)
    doubled = pa.compute.multiply(users.column("user_id"), 2).cast(users.schema.field("user_id").type)
    pq.write_table(users.set_column(users.schema.get_field_index("user_id"), "user_id", doubled), first)
    whole = validate_tables(spec, tmp_path / "gen" / "tables").to_dict()
    users_files = open_parts(tmp_path / "gen" / "tables", "users").files
    # users against themselves by user_id: a doubled id's first row is another user's
    times = ("user_id", "signed_up_at", users_files, "user_id", "signed_up_at", _ms)
    late_here = group_rules.late(users_files, *times)
    folders.clear()  # the checks in this process used temporary folders
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as cluster:
        address = cluster.scheduler_address
        there = (unique_check(child, planned, address), fk_by_buckets(child, "fk", parent, "k", address))
        tasks = validate_tables(spec, tmp_path / "gen" / "tables", cluster=address).to_dict()
        late_there = group_rules.late(users_files, *times, cluster=address)
        ran = set(cluster.scheduler.task_prefixes)
    assert not here[0].success and not here[1].success  # repeated values, and values that are no key
    assert [c.observed for c in there] == [c.observed for c in here]
    assert {"synthreg-checks-spread", "synthreg-checks-repeated", "synthreg-checks-unmatched"} <= ran, ran
    assert {"synthreg-checks-timed", "synthreg-checks-earlier"} <= ran, ran
    assert late_there == late_here and late_here.unexpected > 0 and late_here.checked > late_here.unexpected
    failed = {(c["table"], c["check"], c["column"]) for c in whole["checks"] if not c["success"]}
    assert {
        ("users", "expect_column_values_to_be_unique", "user_id"),
        ("orders", "foreign_key_integrity", "user_id"),
    } <= failed
    assert {k: v for k, v in tasks.items() if k != "seconds"} == {
        k: v for k, v in whole.items() if k != "seconds"
    }
    beside = [(tmp_path / d / ".checks").resolve() for d in ("v", "v", "gen", "gen", "gen")]
    assert [f.parent for f in folders] == beside  # where the workers see them
    assert not any(f.exists() for f in beside)  # removed after


def test_a_create_on_a_remote_cluster_runs_its_checks_by_buckets_there(
    workspace: Path, small_spec_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``create`` on a cluster reached by its address hands it to the validation (in the sidecar
    helper): a unique column that does not increase (uuids), over more rows than a bucket, is
    counted by the cluster's workers; and to the quality metrics, counted part by part by the
    tasks that wrote the parts (no task of its own counts a part again), by buckets on the
    cluster, equal to what DuckDB gives over the version's tables."""
    from distributed import LocalCluster

    import synthreg
    from synthreg.generators import group_rules

    data = yaml.safe_load(small_spec_text)
    data["tables"]["users"]["columns"]["token"] = {"type": "uuid", "unique": True}
    monkeypatch.setattr(group_rules, "BUCKET_ROWS", 100)  # 300 users: buckets (the helper is forked)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as cluster:
        made = synthreg.open(workspace).create("small", spec=data, cluster=cluster.scheduler_address)
        ran = set(cluster.scheduler.task_prefixes)
    assert made.status == "approved" and made.validation["failed"] == 0
    assert {"synthreg-checks-spread", "synthreg-checks-repeated"} <= ran, ran
    assert "synthreg-quality-bucket" in ran and "synthreg-quality-part" not in ran, ran
    assert not list(workspace.rglob(".checks")) and not list(workspace.rglob(".quality"))
    from synthreg.generators.spec_io import load_spec
    from synthreg.validators.quality import table_quality

    version = workspace / made.path
    found = json.loads((version / "quality.json").read_text())["tables"]
    assert found == table_quality(load_spec(version / "spec.yaml"), version / "tables")


def test_a_check_scratch_folder_survives_another_check_removing_the_shared_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two checks share ``.checks`` (quality in ``create``'s process, validation in its helper); one
    removes it when empty as it ends. If that happens while the other makes its folder, the other
    makes it again instead of failing."""
    from synthreg.generators import group_rules

    part = tmp_path / "v" / "tables" / "t" / "part-00000.parquet"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"")
    real = Path.mkdir
    raced: list[Path] = []

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.parent.name == ".checks" and not raced:  # the other check's rmdir gets in first
            raced.append(self)
            raise FileNotFoundError(self)
        real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with group_rules._scratch([part], "tcp://127.0.0.1:1", "synthreg-x-") as folder:
        assert folder.is_dir() and folder.parent == (tmp_path / "v" / ".checks").resolve()
    assert raced and not (tmp_path / "v" / ".checks").exists()
