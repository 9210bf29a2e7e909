"""The smoke path: the real ingest on a small fresh topic, Kafka -> Spark -> events, with the
checkpoint on the S3-compatible store via s3a://, on both servers."""

import boto3
from botocore.config import Config as BotoConfig

from clickstream_pipeline.ingest.smoke import run_smoke


def checkpoint_objects(local_config, local_secrets, checkpoint: str) -> set[str]:
    bucket, _, prefix = checkpoint.removeprefix("s3a://").partition("/")
    s3 = boto3.client(
        "s3",
        endpoint_url=local_config.storage.s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=local_secrets["s3_access_key"].get_secret_value(),
        aws_secret_access_key=local_secrets["s3_secret_key"].get_secret_value(),
        config=BotoConfig(s3={"addressing_style": "path"}),
    )
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return {obj["Key"][len(prefix) + 1 :] for page in pages for obj in page.get("Contents", [])}


def test_the_ingest_on_a_small_topic_with_an_s3a_checkpoint(spark, tier, local_secrets):
    result = run_smoke(spark, tier.config, tier.secrets, messages=1500)

    assert result.sent == 1500
    assert result.rows_in_db == 1500
    assert result.distinct_offsets == 1500
    assert result.checkpoint.startswith("s3a://checkpoints/")
    objects = checkpoint_objects(tier.config, local_secrets, result.checkpoint)
    assert {"metadata", "offsets/0", "commits/0"} <= objects


def test_same_path_through_the_event_hubs_style_sasl_ssl_listener(spark, tier):
    kafka = tier.config.kafka.model_copy(
        update={"security": "eventhubs", "bootstrap_servers": None}  # server from Kafka-Server
    )
    cfg = tier.config.model_copy(update={"kafka": kafka})
    result = run_smoke(spark, cfg, tier.secrets, messages=300)
    assert (result.sent, result.rows_in_db, result.distinct_offsets) == (300, 300, 300)
