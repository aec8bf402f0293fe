-- Agents: what each host must run and what it reported.
-- Durable: assignments and bootstrap progress. Rebuilt from agents' reports: component_status and
-- the hosts' applied_generation, last_seen_at and state.
ALTER TABLE hosts ADD COLUMN generation BIGINT NOT NULL DEFAULT 1;
ALTER TABLE hosts ADD COLUMN applied_generation BIGINT NOT NULL DEFAULT 0;

CREATE TABLE assignments (
    id VARCHAR(64) PRIMARY KEY NOT NULL,
    cluster_id VARCHAR(64) NOT NULL,
    role VARCHAR(32) NOT NULL,
    name VARCHAR(255) NOT NULL,
    host_name VARCHAR(255) NOT NULL,
    port BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (cluster_id, role, name),
    UNIQUE (host_name, port),
    CONSTRAINT assignments_cluster_fk FOREIGN KEY (cluster_id) REFERENCES clusters (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE bootstrap_tasks (
    cluster_id VARCHAR(64) NOT NULL,
    task VARCHAR(32) NOT NULL,
    host_name VARCHAR(255) NOT NULL,
    done BIGINT NOT NULL,
    last_error VARCHAR(2048) NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, task),
    CONSTRAINT bootstrap_cluster_fk FOREIGN KEY (cluster_id) REFERENCES clusters (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE component_status (
    host_id VARCHAR(64) NOT NULL,
    cluster_name VARCHAR(255) NOT NULL,
    role VARCHAR(32) NOT NULL,
    name VARCHAR(255) NOT NULL,
    state VARCHAR(64) NOT NULL,
    healthy BIGINT NOT NULL,
    last_error VARCHAR(2048) NOT NULL,
    restarts BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (host_id, cluster_name, role, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
