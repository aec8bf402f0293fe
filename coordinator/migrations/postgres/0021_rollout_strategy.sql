-- A cluster's rollout strategy (JSON: healthy_deadline_seconds, auto_revert); NULL: the defaults.
ALTER TABLE clusters ADD COLUMN rollout_strategy TEXT;
-- Why Muster paused the cluster's restart turn (a server missed its healthy deadline); NULL when
-- an operator paused it, or it is not paused.
ALTER TABLE clusters ADD COLUMN rollout_pause_reason TEXT;
-- What the current restart epoch was started for: settings (a change of server settings),
-- undo (muster rollout undo), revert (auto_revert), restart (muster rollout restart); NULL: none.
ALTER TABLE clusters ADD COLUMN rollout_cause TEXT;
-- The restart epoch before the server settings' last change: servers started under it run the
-- settings an undo brings back.
ALTER TABLE clusters ADD COLUMN previous_restart_epoch BIGINT;
-- After an undo: servers started under this epoch already run the current settings, and are not
-- restarted again.
ALTER TABLE clusters ADD COLUMN restart_epoch_same BIGINT;
-- When a server, not healthy, first reported another restart epoch or Python revision than its
-- report before (it restarted into a rollout); NULL once it is healthy. What healthy_deadline
-- is measured from.
ALTER TABLE component_status ADD COLUMN rollout_pending_since BIGINT;
-- Why auto_revert undid the cluster's last rollout of server settings; NULL once another
-- rollout starts.
ALTER TABLE clusters ADD COLUMN rollout_revert_reason TEXT;
