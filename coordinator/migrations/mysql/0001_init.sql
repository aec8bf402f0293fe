-- Muster's own tables. Durable: clusters (with sealed secrets), join tokens, admin tokens, hosts,
-- events. Timestamps are milliseconds since the Unix epoch.
CREATE TABLE clusters (
    id VARCHAR(64) PRIMARY KEY NOT NULL,
    name VARCHAR(255) NOT NULL UNIQUE,
    description VARCHAR(1024) NOT NULL,
    odb_type VARCHAR(1024) NOT NULL,
    odb_host VARCHAR(1024) NOT NULL,
    odb_port BIGINT NOT NULL,
    odb_user VARCHAR(1024) NOT NULL,
    odb_db_name VARCHAR(1024) NOT NULL,
    odb_schema VARCHAR(1024) NOT NULL,
    has_odb_password BIGINT NOT NULL,
    odb_password_sealed VARCHAR(1024) NOT NULL,
    secret_key_sealed VARCHAR(1024) NOT NULL,
    jwt_secret_sealed VARCHAR(1024) NOT NULL,
    admin_invoke_password_sealed VARCHAR(1024) NOT NULL,
    created_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE join_tokens (
    id VARCHAR(64) PRIMARY KEY NOT NULL,
    cluster_id VARCHAR(64) NOT NULL,
    secret_hash VARCHAR(1024) NOT NULL,
    roles VARCHAR(1024) NOT NULL,
    description VARCHAR(1024) NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    max_uses BIGINT NOT NULL,
    uses BIGINT NOT NULL,
    revoked_at BIGINT,
    CONSTRAINT join_tokens_cluster_fk FOREIGN KEY (cluster_id) REFERENCES clusters (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE admin_tokens (
    id VARCHAR(64) PRIMARY KEY NOT NULL,
    token_hash VARCHAR(64) NOT NULL UNIQUE,
    description VARCHAR(1024) NOT NULL,
    created_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE hosts (
    id VARCHAR(64) PRIMARY KEY NOT NULL,
    name VARCHAR(255) NOT NULL UNIQUE,
    advertise_address VARCHAR(1024) NOT NULL,
    labels VARCHAR(4096) NOT NULL,
    state VARCHAR(1024) NOT NULL,
    enrolled_at BIGINT NOT NULL,
    last_seen_at BIGINT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE events (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    kind VARCHAR(1024) NOT NULL,
    cluster_name VARCHAR(255) NOT NULL,
    host_name VARCHAR(1024) NOT NULL,
    actor VARCHAR(1024) NOT NULL,
    message VARCHAR(2048) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX events_cluster ON events (cluster_name, id);
