-- The cluster's server settings (`muster configure server`): a JSON object of allowlisted
-- server.conf keys and env.NAME variables (muster_proto::server_settings), '' for none. A change
-- starts a rolling restart (restart_epoch), at whose turn each server starts with them.
ALTER TABLE clusters ADD COLUMN server_settings TEXT;
