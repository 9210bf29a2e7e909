"""Packaging for clickstream-pipeline.

The repository keeps the design card's folders (jobs/, libs/, sql/, conf/); the wheel maps them
into one import package, `clickstream_pipeline`, so nothing generic lands in site-packages:

    libs/clickstream_pipeline -> clickstream_pipeline
    jobs/                     -> clickstream_pipeline.jobs   (entry points)
    sql/                      -> clickstream_pipeline.sql    (migrations and named queries)
    conf/                     -> clickstream_pipeline.conf   (one TOML file per environment)
    conf/models/              -> clickstream_pipeline.conf.models (event models)
"""

from setuptools import setup

PACKAGE = "clickstream_pipeline"

JOBS = {
    "clickstream-bootstrap": "bootstrap",
    "clickstream-ingest": "ingest",
    "clickstream-produce": "produce",
    "clickstream-load": "load",
    "clickstream-dead-letters": "dead_letters",
    "clickstream-smoke": "smoke",
    "clickstream-query": "query",
    "clickstream-dashboard": "dashboard",
}

setup(
    name="clickstream-pipeline",
    version="0.1.0",
    description="PySpark Structured Streaming jobs: clickstream from Kafka into Citus rollups",
    python_requires=">=3.10",
    package_dir={
        PACKAGE: "libs/clickstream_pipeline",
        f"{PACKAGE}.jobs": "jobs",
        f"{PACKAGE}.sql": "sql",
        f"{PACKAGE}.sql.migrations": "sql/migrations",
        f"{PACKAGE}.sql.queries": "sql/queries",
        f"{PACKAGE}.sql.roles": "sql/roles",
        f"{PACKAGE}.conf": "conf",
        f"{PACKAGE}.conf.models": "conf/models",
    },
    packages=[
        PACKAGE,
        f"{PACKAGE}.core",
        f"{PACKAGE}.warehouse",
        f"{PACKAGE}.traffic",
        f"{PACKAGE}.ingest",
        f"{PACKAGE}.dashboard",
        f"{PACKAGE}.jobs",
        f"{PACKAGE}.sql",
        f"{PACKAGE}.sql.migrations",
        f"{PACKAGE}.sql.queries",
        f"{PACKAGE}.sql.roles",
        f"{PACKAGE}.conf",
        f"{PACKAGE}.conf.models",
    ],
    package_data={
        f"{PACKAGE}.sql.migrations": ["*.sql"],
        f"{PACKAGE}.sql.queries": ["*.sql"],
        f"{PACKAGE}.sql.roles": ["*.sql"],
        f"{PACKAGE}.dashboard": ["assets/*.css"],
        f"{PACKAGE}.conf": ["*.toml"],
        f"{PACKAGE}.conf.models": ["*.toml"],
    },
    # What every runtime needs. A Databricks runtime brings its own Spark, Delta and pyarrow,
    # so those are in the `local` extra, never forced on a cluster.
    install_requires=[
        "pydantic>=2.5,<3",
        "psycopg2-binary>=2.9",
        "sqlparse>=0.5",
        "adbc-driver-postgresql>=1.0",
        "msgspec>=0.18",
        "azure-identity>=1.15",
        "azure-keyvault-secrets>=4.7",
        "confluent-kafka>=2.3",
        "tqdm>=4.66",
        "prometheus-client>=0.20",  # the ingest job's OpenMetrics endpoint
    ],
    extras_require={
        "local": [
            "pyspark[connect]==4.0.0",  # with the Spark Connect client (grpcio and friends)
            "delta-spark==4.0.0",
            "pyarrow>=15",
            "pandas>=2",
        ],
        # The live dashboard (clickstream-dashboard): Dash serves its page and Plotly charts
        # from the package itself, so it works without internet access.
        "dashboard": [
            "dash>=2.17",
            "dash-auth>=2.3",  # HTTP basic auth in front of every page and callback
            "gunicorn>=22; platform_system != 'Windows'",  # the default server (pre-fork)
            "waitress>=3",  # the server on Windows (threads, one process)
        ],
        "dev": [
            "chispa>=0.10",
            "pytest>=8,<9.2",  # 9.2 keeps node ids where pytest-xdist 3.8 cannot add its groups
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.6",  # the test phase on both cores: independent files side by side
            "boto3>=1.34",
            "ruff>=0.6",
            "mypy>=1.10",
            "build>=1.2",
            "matplotlib>=3.7",
            "pyyaml>=6",
            "selenium>=4.20",
            "aiohttp>=3.9",  # the dashboard viewers benchmark's load (asyncio HTTP client)
            "psutil>=5.9",  # the benchmarks' process CPU and memory
            "uv>=0.4",  # the wheel test's clean venv, installed from uv's cache in a second
        ],
        # the docs site (mkdocs.yml, make docs); its reference pages are generated from the code
        "docs": ["mkdocs-material>=9.5"],
    },
    entry_points={
        "console_scripts": [
            f"{name} = {PACKAGE}.jobs.{module}:main" for name, module in JOBS.items()
        ]
    },
)
