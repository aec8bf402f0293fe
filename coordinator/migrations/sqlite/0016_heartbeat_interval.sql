-- How often the host's agent reports, as it last said (0: it did not say; taken as 5 s): a host
-- whose reports stop for longer than two of its intervals is shown `unknown`.
ALTER TABLE hosts ADD COLUMN heartbeat_interval_ms BIGINT NOT NULL DEFAULT 0;
