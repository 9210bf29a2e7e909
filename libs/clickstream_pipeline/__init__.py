"""clickstream-pipeline: clickstream from Kafka into Citus rollups with PySpark."""

__version__ = "0.1.0"
