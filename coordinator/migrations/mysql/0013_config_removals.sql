-- The objects (section, name, security type; a JSON list) that earlier revisions of a cluster's
-- configuration held and the current one does not, still to be deleted through Zato by the
-- importing server's agent once it imports the current revision (then cleared). Kept by the
-- coordinator, not on the importing server: another server may import the next revision.
ALTER TABLE clusters ADD COLUMN config_removals MEDIUMTEXT NULL;
