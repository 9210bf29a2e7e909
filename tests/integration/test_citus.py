"""What only a Citus cluster shows: where the bootstrap puts each table, how many shards and
partitions it makes, and that the rollups run on the shards (checked with EXPLAIN)."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from clickstream_pipeline.jobs import bootstrap
from clickstream_pipeline.warehouse.database import ConnectionParams
from clickstream_pipeline.warehouse.rollups import REGISTERED_FUNCTIONS
from devkit.db import CITUS_SHARD_COUNT, citus_workers, query, scratch_database

DISTRIBUTED = {
    "events",
    "rollup_events_5min",
    "rollup_events_1hr",
    "rollup_customer_totals_5min",
    "rollup_customer_totals_1hr",
}
COORDINATOR_LOCAL = {
    "rollups",
    "clickstream_ingest_ledger",
    "clickstream_ingest_batches",
    "clickstream_ingest_tenant_freshness",
    "clickstream_schema_migrations",
    "clickstream_event_models",
    "clickstream_retention",
    "clickstream_rollup_tables",
    "rollup_totals_5min",
    "rollup_totals_1hr",
    "rollup_dimensions_5min",
    "rollup_dimensions_1hr",
}
LAB_FUNCTIONS = ("five_minutely_aggregation", "hourly_aggregation", "dashboard_aggregation")

pytestmark = pytest.mark.parametrize("tier", ["citus"], indirect=True)


@pytest.fixture(scope="module")
def citus_db(tier) -> ConnectionParams:
    return tier.db


@pytest.fixture(scope="module")
def fresh(citus_db) -> Iterator[tuple[ConnectionParams, str, str]]:
    """A new database on the cluster, bootstrapped twice by the job: (db, first, second)."""
    with scratch_database(citus_db) as db, pytest.MonkeyPatch.context() as env:
        env.setenv("DATABASE_CONNECTION_STRING", db.jdbc_url(with_credentials=True))
        env.setenv("CLICKSTREAM__DATABASE__CITUS_SHARD_COUNT", str(CITUS_SHARD_COUNT))
        outputs = []
        for _ in range(2):
            out = io.StringIO()  # capsys is per test; this fixture is per module
            with contextlib.redirect_stdout(out):
                assert bootstrap.main(["--env", "local", "--set", "secrets.backend=env"]) == 0
            outputs.append(out.getvalue())
        yield db, outputs[0], outputs[1]


def test_the_bootstrap_distributes_and_colocates_by_customer(fresh):
    db, _, _ = fresh
    rows = query(
        db,
        """SELECT t.table_name::text, t.citus_table_type, t.distribution_column, t.shard_count,
                  t.colocation_id
           FROM citus_tables t JOIN pg_class c ON c.oid = t.table_name
           WHERE NOT c.relispartition""",
    )
    assert {r[0] for r in rows} == DISTRIBUTED
    assert {(r[1], r[2], r[3]) for r in rows} == {("distributed", "customer_id", CITUS_SHARD_COUNT)}
    assert len({r[4] for r in rows}) == 1, "every distributed table in one colocation group"
    local = {
        name
        for (name,) in query(
            db,
            """SELECT c.relname::text FROM pg_class c
               WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
                 AND NOT c.relispartition
                 AND c.oid NOT IN (SELECT logicalrelid FROM pg_dist_partition)""",
        )
    }
    assert local == COORDINATOR_LOCAL


def test_objects_land_in_public_not_in_the_citus_schema(fresh):
    db, _, _ = fresh
    # the lab's user is `citus`: "$user", public would pick the extension's schema citus
    placed = dict(
        query(
            db,
            """SELECT p.proname::text, p.pronamespace::regnamespace::text FROM pg_proc p
               WHERE p.proname = ANY (%s)""",
            (list(LAB_FUNCTIONS),),
        )
    )
    assert placed == dict.fromkeys(LAB_FUNCTIONS, "public")
    assert query(db, "SELECT to_regclass('public.clickstream_schema_migrations')::text") == [
        ("clickstream_schema_migrations",)
    ]


def test_events_has_daily_partitions_and_few_shards(fresh):
    db, _, _ = fresh
    ((interval, premake),) = query(
        db,
        "SELECT partition_interval, premake FROM partman.part_config "
        "WHERE parent_table = 'public.events'",
    )
    assert (interval, premake) == ("1 day", 3)
    (partitions,) = query(db, "SELECT count(*) FROM partman.show_partitions('public.events')")
    assert 5 <= partitions[0] <= 7  # 2 days back .. 3 ahead, truncated to the day
    (shards,) = query(db, "SELECT count(*) FROM pg_dist_shard")
    # partitions + default + parent, and the four customer rollups, CITUS_SHARD_COUNT each
    assert shards[0] == (partitions[0] + 2 + 4) * CITUS_SHARD_COUNT


def test_the_bootstrap_says_where_tables_live_and_prints_no_citus_warnings(fresh):
    _, first, second = fresh
    assert "WARNING" not in first
    assert (
        f"citus    distributed by customer_id in {CITUS_SHARD_COUNT} colocated shards: "
        "events, rollup_customer_totals_1hr, rollup_customer_totals_5min, rollup_events_1hr, "
        "rollup_events_5min"
    ) in first
    assert "citus    local on the coordinator" in first
    assert "views kept on the Citus coordinator only" in first
    assert "bootstrap done: 0 applied" in second and "(nothing changed)" in second


def rollup_inserts(db: ConnectionParams) -> dict[str, str]:
    """target table -> the INSERT ... SELECT of the registry's rollup functions, for an id
    window."""
    inserts = {}
    for (name,) in query(db, REGISTERED_FUNCTIONS):
        ((body,),) = query(db, "SELECT pg_get_functiondef(%s::regproc)", (name,))
        for statement in re.findall(r"INSERT INTO .*?;", body, re.S):
            target = statement.split()[2].removeprefix("public.").strip('"')
            sql_text = re.sub(r"\bstart_id\b", "1", statement)
            inserts[target] = re.sub(r"\bend_id\b", "1000000", sql_text).rstrip(";")
    return inserts


def test_rollups_run_on_the_shards(citus_db):
    """Every rollup of the registry (the lab's and each model's) aggregates on the shards."""
    inserts = rollup_inserts(citus_db)
    registered = query(citus_db, "SELECT table_name FROM clickstream_rollup_tables")
    assert set(inserts) == {t for (t,) in registered} and len(inserts) > 8
    distributed = {t for (t,) in query(citus_db, "SELECT table_name::text FROM citus_tables")}
    assert distributed >= DISTRIBUTED
    for target, statement in inserts.items():
        plan = "\n".join(r[0] for r in query(citus_db, f"EXPLAIN (COSTS OFF) {statement}"))
        assert "Task Count" in plan, plan
        assert "pull to coordinator" not in plan and "repartition" not in plan, plan
        if target in distributed:
            # colocated INSERT ... SELECT: each task inserts into its own shard
            assert re.search(rf"Insert on {target}_\d+", plan), plan
        else:
            # a coordinator table: the shards aggregate, the coordinator merges the groups
            top, _, task = plan.partition("->  Task")
            assert f"Insert on {target}" in top and "Aggregate" in task, plan


def test_scratch_databases_made_at_once_all_join_the_cluster(citus_db):
    """The tests on two workers make Citus databases at once: each joins every worker."""
    joined: list[int] = []

    def make() -> None:
        with scratch_database(citus_db) as db:
            joined.append(query(db, "SELECT count(*) FROM pg_dist_node WHERE groupid <> 0")[0][0])

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(make) for _ in range(4)]:
            future.result()
    assert joined == [len(citus_workers(citus_db))] * 4
