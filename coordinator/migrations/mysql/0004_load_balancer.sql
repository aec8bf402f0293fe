-- Load balancers: each assignment's settings (JSON, only load balancers have any), and the backend
-- servers as each load balancer's HAProxy last reported them (rebuilt from agents' reports).
ALTER TABLE assignments ADD COLUMN settings VARCHAR(2048) NOT NULL DEFAULT '';

CREATE TABLE backend_status (
    host_id VARCHAR(64) NOT NULL,
    cluster_name VARCHAR(64) NOT NULL,
    lb_name VARCHAR(64) NOT NULL,
    server_name VARCHAR(64) NOT NULL,
    address VARCHAR(300) NOT NULL,
    state VARCHAR(64) NOT NULL,
    check_result VARCHAR(1024) NOT NULL,
    sessions BIGINT NOT NULL,
    PRIMARY KEY (host_id, cluster_name, lb_name, server_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
