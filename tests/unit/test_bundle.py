"""The Databricks bundle and the Jobs API JSON agree with the wheel, its parsers and its config."""

from __future__ import annotations

import ast
import importlib
import json
import re
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from clickstream_pipeline.core.config import load_config, resolve_storage_paths
from clickstream_pipeline.core.errors import ConfigError
from clickstream_pipeline.core.secrets import Secrets, env_variable_name
from tests.conftest import PROJECT_DIR

VAR = re.compile(r"\$\{var\.([A-Za-z0-9_]+)\}")
SECRET_REF = re.compile(r"\{\{secrets/([^/}]+)/([^}]+)\}\}")


def bundle() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_DIR / "databricks.yml").read_text())


def resource_files() -> list[Path]:
    files = [f for pattern in bundle()["include"] for f in sorted(PROJECT_DIR.glob(pattern))]
    assert files, "databricks.yml includes no resource files"
    return files


def bundle_jobs() -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    for path in resource_files():
        for name, job in yaml.safe_load(path.read_text())["resources"]["jobs"].items():
            assert name not in jobs, f"job {name} defined twice"
            jobs[name] = job
    return jobs


def json_jobs() -> dict[str, dict[str, Any]]:
    files = sorted((PROJECT_DIR / "databricks" / "jobs").glob("*.json"))
    assert {p.stem for p in files} >= {"bootstrap", "ingest"}
    return {p.stem: json.loads(p.read_text()) for p in files}


def target_variables(target: str) -> dict[str, str]:
    spec = bundle()
    values = {k: str(v["default"]) for k, v in spec["variables"].items()}
    values.update({k: str(v) for k, v in spec["targets"][target].get("variables", {}).items()})
    return values


def substitute(value: Any, variables: dict[str, str]) -> Any:
    text = json.dumps(value)
    return json.loads(VAR.sub(lambda m: variables[m.group(1)], text))


def wheel_tasks() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, job, task) for every job of the bundle (per target) and of the Jobs JSON."""
    found = []
    for target in bundle()["targets"]:
        for name, job in bundle_jobs().items():
            resolved = substitute(job, target_variables(target))
            found += [(f"{target}/{name}", resolved, t) for t in resolved["tasks"]]
    for name, job in json_jobs().items():
        found += [(f"json/{name}", job, t) for t in job["tasks"]]
    return found


def console_scripts() -> dict[str, str]:
    return {
        ep.name: ep.value
        for ep in distribution("clickstream-pipeline").entry_points
        if ep.group == "console_scripts"
    }


def test_the_bundle_builds_the_wheel_and_its_targets_differ_only_in_variables():
    spec = bundle()
    (artifact,) = spec["artifacts"].values()
    assert artifact["type"] == "whl" and "dist" in artifact["build"]
    assert set(spec["targets"]) == {"dev", "prod"}
    for target in spec["targets"].values():
        assert set(target) <= {"default", "variables"}
        assert set(target.get("variables", {})) <= set(spec["variables"])
    used = set(VAR.findall("".join(p.read_text() for p in resource_files())))
    assert used <= set(spec["variables"]), used - set(spec["variables"])


def test_every_task_is_a_wheel_task_with_an_entry_point_and_parameters_its_parser_accepts():
    scripts = console_scripts()
    tasks = wheel_tasks()
    assert {t["python_wheel_task"]["entry_point"] for _, _, t in tasks} >= {
        "clickstream-bootstrap",
        "clickstream-ingest",
    }
    for where, _, task in tasks:
        wheel_task = task["python_wheel_task"]
        assert wheel_task["package_name"] == "clickstream_pipeline", where
        assert wheel_task["entry_point"] in scripts, where
        module, _, function = scripts[wheel_task["entry_point"]].partition(":")
        job = importlib.import_module(module)
        assert function == "main"
        try:
            args = job.parser().parse_args(wheel_task["parameters"])
        except SystemExit:
            pytest.fail(f"{where}: {wheel_task['parameters']} refused by {module}.parser()")
        # the --set overrides must also make a valid config
        cfg = load_config(args.env, args.overrides, environ={})
        assert cfg.secrets.backend == "databricks" and cfg.spark.master is None, where


def test_every_task_has_the_wheel_and_a_utc_cluster_and_the_ingest_runs_on():
    for where, job, task in wheel_tasks():
        assert any("whl" in lib and lib["whl"].endswith(".whl") for lib in task["libraries"]), where
        clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
        cluster = clusters[task["job_cluster_key"]]
        assert cluster["spark_conf"]["spark.sql.session.timeZone"] == "UTC", where
        assert cluster["spark_version"].endswith("scala2.13"), where  # Spark 4 runtimes
    for where, job, task in wheel_tasks():
        if task["python_wheel_task"]["entry_point"] == "clickstream-ingest":
            retries = task.get("max_retries") == -1 and task.get("min_retry_interval_millis")
            assert job.get("continuous") or retries, f"{where}: not continuous, no retries"
    prod_ingest = substitute(bundle_jobs()["clickstream_ingest"], target_variables("prod"))
    assert prod_ingest["continuous"]["pause_status"] == "UNPAUSED"


def _secret_keys(node: ast.expr, constants: dict[str, ast.expr]) -> set[str]:
    """The logical keys an argument of `resolve_secrets` names: string literals, in tuples,
    lists or a dict's keys, through module constants and `*unpacked` ones."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Name) and node.id in constants:
        return _secret_keys(constants[node.id], constants)
    if isinstance(node, ast.Starred):
        return _secret_keys(node.value, constants)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(*(_secret_keys(e, constants) for e in node.elts))
    if isinstance(node, ast.Dict):
        return set().union(*(_secret_keys(k, constants) for k in node.keys if k is not None))
    return set()


def resolved_secret_keys() -> dict[str, set[str]]:
    """Each module's logical secret keys, read from its `resolve_secrets(...)` calls."""
    found: dict[str, set[str]] = {}
    files = [*(PROJECT_DIR / "libs").rglob("*.py"), *(PROJECT_DIR / "jobs").glob("*.py")]
    files += (PROJECT_DIR / "notebooks").glob("*.py")
    for path in files:
        tree = ast.parse(path.read_text())
        constants = {
            target.id: node.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "resolve_secrets":
                args = [*call.args[1:], *(k.value for k in call.keywords)]
                keys = set().union(*(_secret_keys(a, constants) for a in args))
                found.setdefault(str(path.relative_to(PROJECT_DIR)), set()).update(keys)
    return found


def stack_secret_names() -> set[str]:
    """The names the local stack's scripts write into .stack/secrets.env."""
    scripts = "".join(p.read_text() for p in (PROJECT_DIR / "scripts" / "stack").glob("*.sh"))
    return set(re.findall(r"\b(?:secret_set|set_secret_once) ([A-Za-z0-9_-]+) ", scripts))


KEY_VAULT_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
# Azure-only secrets: the local stack has no ADLS, service principal or dashboard login
AZURE_ONLY = {"adls_account_name", "adls_account_key", "sp_client_id", "sp_client_key"}
AZURE_ONLY |= {"tenant_id", "dashboard_password"}


def test_every_secret_the_code_resolves_has_a_name_where_each_backend_looks():
    by_module = resolved_secret_keys()
    assert {"jobs/dashboard.py", "libs/clickstream_pipeline/ingest/session.py"} <= set(by_module)
    used = set().union(*by_module.values())
    assert {"database", "kafka_connection_string", "s3_secret_key", "adls_account_key"} <= used
    databricks = load_config("databricks", environ={})
    # a Key Vault-backed scope (Databricks) and Key Vault take Key Vault names, one per key
    names = {key: databricks.secrets.name_of(key) for key in sorted(used)}
    assert all(KEY_VAULT_NAME.fullmatch(name) for name in names.values()), names
    assert len(set(names.values())) == len(names), names
    # the env backend: one distinct variable per name
    variables = {env_variable_name(name) for name in names.values()}
    assert len(variables) == len(names) and all(v.isidentifier() for v in variables)
    # the local stack's file (and its vault, seeded from the file) holds each name but Azure's
    stack = stack_secret_names()
    for env in ("local", "local-citus"):
        local = load_config(env, environ={}).secrets
        wanted = {k: local.name_of(k) for k in used - AZURE_ONLY}
        assert {k: n for k, n in wanted.items() if n not in stack} == {}, env
    # the bundle's and the Jobs JSON's scope and name overrides are those the jobs read
    texts = [p.read_text() for p in resource_files()]
    texts += [json.dumps(job) for job in json_jobs().values()]
    texts.append((PROJECT_DIR / "conf" / "databricks.toml").read_text())
    refs = [ref for text in texts for ref in SECRET_REF.findall(text)]
    assert {name for _, name in refs} <= set(names.values())
    scopes = {scope for scope, _ in refs}
    for where, _, task in wheel_tasks():
        params = task["python_wheel_task"]["parameters"]
        scopes |= {p.split("=", 1)[1] for p in params if p.startswith("secrets.scope=")}
        overrides = [p.split("=", 1) for p in params if p.startswith("secrets.names.")]
        assert all(k.removeprefix("secrets.names.") in used for k, _ in overrides), where
    default_scope = bundle()["variables"]["secret_scope"]["default"]
    assert scopes == {databricks.secrets.scope} == {default_scope}


def test_the_adls_account_placeholder_is_filled_from_its_secret():
    cfg = load_config("databricks", environ={})
    assert "{adls_account}" in cfg.storage.checkpoint_root
    secrets = Secrets({"adls_account_name": SecretStr("wwilab01")}, "test")
    resolved = resolve_storage_paths(cfg, secrets)
    assert resolved.storage.checkpoint_root == (
        "abfss://transactions@wwilab01.dfs.core.windows.net/checkpoints"
    )
    assert resolved.dead_letter_path == (
        "abfss://transactions@wwilab01.dfs.core.windows.net/lake/dead_letters"
    )
    assert resolved.checkpoint_location.endswith("/checkpoints/clickstream-ingest")
    assert resolved.kafka == cfg.kafka  # nothing else changes


def test_a_missing_or_odd_account_fails_without_showing_it():
    cfg = load_config("databricks", environ={})
    with pytest.raises(ConfigError, match="ADLS-Gen2-Account-Name"):
        resolve_storage_paths(cfg, Secrets({}, "test"))
    odd = Secrets({"adls_account_name": SecretStr("evil.host/x")}, "test")
    with pytest.raises(ConfigError) as failure:
        resolve_storage_paths(cfg, odd)
    assert "evil" not in str(failure.value)


def test_paths_without_the_placeholder_are_left_alone():
    cfg = load_config("local", environ={})
    assert resolve_storage_paths(cfg, Secrets({}, "test")) is cfg
