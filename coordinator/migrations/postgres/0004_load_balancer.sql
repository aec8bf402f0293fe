-- Load balancers: each assignment's settings (JSON, only load balancers have any), and the backend
-- servers as each load balancer's HAProxy last reported them (rebuilt from agents' reports).
ALTER TABLE assignments ADD COLUMN settings TEXT NOT NULL DEFAULT '';

CREATE TABLE backend_status (
    host_id TEXT NOT NULL,
    cluster_name TEXT NOT NULL,
    lb_name TEXT NOT NULL,
    server_name TEXT NOT NULL,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    check_result TEXT NOT NULL,
    sessions BIGINT NOT NULL,
    PRIMARY KEY (host_id, cluster_name, lb_name, server_name)
);
