-- One more for each rolling restart of a cluster's servers (`muster rollout restart`); each server
-- reports the epoch its running process was started under.
ALTER TABLE clusters ADD COLUMN restart_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE component_status ADD COLUMN restart_epoch BIGINT NOT NULL DEFAULT 0;
