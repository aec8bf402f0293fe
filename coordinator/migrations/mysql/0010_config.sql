-- A cluster's configuration: enmasse files (Zato's objects as YAML), stored whole by name with
-- their SHA-256, and the values of their `{Zato_Enmasse_Env.NAME}` placeholders, sealed like the
-- cluster's other secrets (a JSON object; empty when there is none). The revision covers both, the
-- values keyed by the cluster's secret key (`muster_proto::config::revision`).
ALTER TABLE clusters ADD COLUMN config_revision VARCHAR(64) NOT NULL DEFAULT '';
ALTER TABLE clusters ADD COLUMN config_env_sealed MEDIUMTEXT NULL;
CREATE TABLE cluster_config_files (
    cluster_id VARCHAR(64) NOT NULL,
    name VARCHAR(255) NOT NULL,
    sha256 VARCHAR(64) NOT NULL,
    content MEDIUMTEXT NOT NULL,
    PRIMARY KEY (cluster_id, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
-- The configuration revision the importing server's agent last imported.
ALTER TABLE component_status ADD COLUMN config_revision VARCHAR(64) NOT NULL DEFAULT '';
