-- The cluster's server settings before their last change (JSON, as server_settings), which
-- `muster rollout undo` brings back; NULL before any change.
ALTER TABLE clusters ADD COLUMN previous_server_settings TEXT;
