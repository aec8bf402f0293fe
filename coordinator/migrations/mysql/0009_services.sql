-- A cluster's services: the Python modules every server of it must run (`muster deploy`, the
-- cluster file's [services]). Stored whole, by name, with each module's SHA-256; the revision is
-- the SHA-256 of the set (`muster_proto::services::revision`), empty when it has none.
ALTER TABLE clusters ADD COLUMN services_revision VARCHAR(64) NOT NULL DEFAULT '';
CREATE TABLE cluster_services (
    cluster_id VARCHAR(64) NOT NULL,
    name VARCHAR(255) NOT NULL,
    sha256 VARCHAR(64) NOT NULL,
    content MEDIUMTEXT NOT NULL,
    PRIMARY KEY (cluster_id, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
-- The revision a server's agent last found deployed on it.
ALTER TABLE component_status ADD COLUMN services_revision VARCHAR(64) NOT NULL DEFAULT '';
