-- Since when a server that restarted into a rollout (rollout_pending_since) has been healthy
-- without a break; NULL while it is not. Once min_healthy_time has passed, both are cleared and
-- the next server's turn comes.
ALTER TABLE component_status ADD COLUMN rollout_healthy_since BIGINT;
