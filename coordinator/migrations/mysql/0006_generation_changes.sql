-- When each host's generation last moved: a coordinator finds the hosts to wake with one indexed
-- query for all its watch streams, instead of each stream polling its own host.
ALTER TABLE hosts ADD COLUMN generation_changed_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX hosts_generation_changed_at ON hosts (generation_changed_at);
