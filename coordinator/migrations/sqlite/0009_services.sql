-- A cluster's services: the Python modules every server of it must run (`muster deploy`, the
-- cluster file's [services]). Stored whole, by name, with each module's SHA-256; the revision is
-- the SHA-256 of the set (`muster_proto::services::revision`), empty when it has none.
ALTER TABLE clusters ADD COLUMN services_revision TEXT NOT NULL DEFAULT '';
CREATE TABLE cluster_services (
    cluster_id TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (cluster_id, name)
);
-- The revision a server's agent last found deployed on it.
ALTER TABLE component_status ADD COLUMN services_revision TEXT NOT NULL DEFAULT '';
