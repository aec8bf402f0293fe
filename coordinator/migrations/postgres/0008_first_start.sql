-- Whether a server of the cluster has ever been healthy. Until one has, on a fresh ODB, only the
-- cluster's first server is created and started: every Zato server writes Zato's ~600 internal
-- services into the ODB at its first start, and two doing it at once deadlock (PostgreSQL 40P01).
-- Clusters that already have a healthy server, or a scheduler target (chosen only among healthy
-- servers), have started.
ALTER TABLE clusters ADD COLUMN servers_started BIGINT NOT NULL DEFAULT 0;
-- Until then, the server that is created and started first (the others wait for it).
ALTER TABLE clusters ADD COLUMN first_server TEXT NOT NULL DEFAULT '';
UPDATE clusters SET servers_started = 1
WHERE scheduler_target <> ''
   OR EXISTS (SELECT 1 FROM component_status s
              WHERE s.cluster_name = clusters.name AND s.role = 'server' AND s.healthy = 1);
