-- 0013_ledger_topic_ids: the offset ledger tells a recreated topic from the old one.
--
-- A topic deleted and created again under the same name starts its offsets at 0. Keyed by
-- name alone, its new messages matched the old topic's committed ranges and were skipped as
-- replays. Each ledger range now carries the topic's identity: Kafka's topic id where the
-- broker gives one, else the generation label the job is configured with
-- (`ingest.topic_generation`), '' for neither. Ranges written before this migration keep ''
-- until the ingest job, at its next start, finds their topic unchanged and adopts them under
-- its id (`ingest.topics.verify_ledger`).
--
-- Adding a NOT NULL column with a constant default rewrites nothing; the primary key and the
-- end-offset index are rebuilt with the identity after the topic.

ALTER TABLE public.clickstream_ingest_ledger
    ADD COLUMN IF NOT EXISTS topic_id text NOT NULL DEFAULT '';
COMMENT ON COLUMN public.clickstream_ingest_ledger.topic_id IS
    'Kafka''s topic id, or ''generation:<label>'' where the broker gives none, or '''' (unknown).';

ALTER TABLE public.clickstream_ingest_ledger
    DROP CONSTRAINT clickstream_ingest_ledger_pkey,
    ADD PRIMARY KEY (sink, kafka_topic, topic_id, kafka_partition, start_offset);

DROP INDEX IF EXISTS public.clickstream_ingest_ledger_end;
CREATE INDEX clickstream_ingest_ledger_end
    ON public.clickstream_ingest_ledger (sink, kafka_topic, topic_id, kafka_partition, end_offset);
