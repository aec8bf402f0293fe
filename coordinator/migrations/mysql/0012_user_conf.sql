-- A cluster's user-config files (NAME.ini, NAME.conf: what its servers' services read as
-- self.config.NAME), sealed together like the cluster's other secrets (a JSON list of name and
-- content), and their revision, keyed with the cluster's secret key
-- (`muster_proto::user_conf::revision`); empty when it has none.
ALTER TABLE clusters ADD COLUMN user_conf_revision VARCHAR(64) NOT NULL DEFAULT '';
ALTER TABLE clusters ADD COLUMN user_conf_sealed MEDIUMTEXT NULL;
-- The user-config revision a server's agent last found in place on it.
ALTER TABLE component_status ADD COLUMN user_conf_revision VARCHAR(64) NOT NULL DEFAULT '';
