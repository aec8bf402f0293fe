-- 1 while an operator holds the cluster's restart turn (`muster rollout pause`): no server starts
-- a restart, for a rolling restart or new Python dependencies, until it is resumed.
ALTER TABLE clusters ADD COLUMN rollout_paused BIGINT NOT NULL DEFAULT 0;
