"""Traffic into the pipeline: the clickstream generator, the Kafka producer and the bulk
loader."""
