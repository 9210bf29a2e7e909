-- 0014_events_properties: the fields an event model does not name, kept with their values as
-- sent (the model's unknown_fields = "keep", the default). A nullable column without a default:
-- PostgreSQL adds it without rewriting events, and Citus adds it to every shard.

ALTER TABLE public.events ADD COLUMN IF NOT EXISTS properties jsonb;

COMMENT ON COLUMN public.events.properties IS
    'Fields of the message the event model does not name, with their values as sent; NULL when there were none (not in the lab).';
