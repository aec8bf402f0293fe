-- Muster's own tables. Durable: clusters (with sealed secrets), join tokens, admin tokens, hosts,
-- events. Timestamps are milliseconds since the Unix epoch.
CREATE TABLE clusters (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    odb_type TEXT NOT NULL,
    odb_host TEXT NOT NULL,
    odb_port BIGINT NOT NULL,
    odb_user TEXT NOT NULL,
    odb_db_name TEXT NOT NULL,
    odb_schema TEXT NOT NULL,
    has_odb_password BIGINT NOT NULL,
    odb_password_sealed TEXT NOT NULL,
    secret_key_sealed TEXT NOT NULL,
    jwt_secret_sealed TEXT NOT NULL,
    admin_invoke_password_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE join_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    cluster_id TEXT NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    roles TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    max_uses BIGINT NOT NULL,
    uses BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX join_tokens_cluster ON join_tokens (cluster_id);

CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE hosts (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    advertise_address TEXT NOT NULL,
    labels TEXT NOT NULL,
    state TEXT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    last_seen_at BIGINT
);

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    cluster_name TEXT NOT NULL,
    host_name TEXT NOT NULL,
    actor TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX events_cluster ON events (cluster_name, id);
