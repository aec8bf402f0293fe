-- Agents: what each host must run and what it reported.
-- Durable: assignments and bootstrap progress. Rebuilt from agents' reports: component_status and
-- the hosts' applied_generation, last_seen_at and state.
ALTER TABLE hosts ADD COLUMN generation BIGINT NOT NULL DEFAULT 1;
ALTER TABLE hosts ADD COLUMN applied_generation BIGINT NOT NULL DEFAULT 0;

CREATE TABLE assignments (
    id TEXT PRIMARY KEY NOT NULL,
    cluster_id TEXT NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    host_name TEXT NOT NULL,
    port BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (cluster_id, role, name),
    UNIQUE (host_name, port)
);

-- One row per cluster and task ('odb', 'cluster'): which host runs it, and whether it is done.
CREATE TABLE bootstrap_tasks (
    cluster_id TEXT NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    host_name TEXT NOT NULL,
    done BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (cluster_id, task)
);

CREATE TABLE component_status (
    host_id TEXT NOT NULL,
    cluster_name TEXT NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    healthy BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    restarts BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (host_id, cluster_name, role, name)
);
