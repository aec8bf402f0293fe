-- A cluster's ODB generation: 0 for the ODB it was created on, one more each time it is rebuilt
-- on an empty ODB (RebuildClusterOdb). Components created under an older one are created again.
ALTER TABLE clusters ADD COLUMN odb_epoch BIGINT NOT NULL DEFAULT 0;
-- The generation a component was created under, as its agent reports it, and whether a server's
-- agent found the ODB answering without the cluster's row (replaced by an empty one).
ALTER TABLE component_status ADD COLUMN odb_epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE component_status ADD COLUMN odb_empty BIGINT NOT NULL DEFAULT 0;
