-- A cluster's Python dependencies (`muster deploy --requirements`, the cluster file's [python]):
-- pip requirements, stored whole, and the wheels to install them from on hosts without a package
-- index, stored whole by name with their SHA-256 (agents fetch each by hash). The revision covers
-- both (`muster_proto::python::revision`), empty when it has none.
ALTER TABLE clusters ADD COLUMN python_revision TEXT NOT NULL DEFAULT '';
ALTER TABLE clusters ADD COLUMN python_requirements TEXT NULL;
CREATE TABLE cluster_python_wheels (
    cluster_id TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    content BLOB NOT NULL,
    PRIMARY KEY (cluster_id, name)
);
-- The Python dependencies revision a server's running process was started with.
ALTER TABLE component_status ADD COLUMN python_revision TEXT NOT NULL DEFAULT '';
-- The desired revision once installed beside the server (it may restart to load it).
ALTER TABLE component_status ADD COLUMN python_installed TEXT NOT NULL DEFAULT '';
