-- Which cluster a host belongs to: the cluster of the join token it enrolled with. Selectors match
-- only a cluster's own hosts, and no component of another cluster is assigned to a host that
-- belongs to one (its secrets would reach that host). Hosts enrolled before this migration belong
-- to the one cluster whose components they run, if there is exactly one; else to none (empty).
ALTER TABLE hosts ADD COLUMN cluster_id TEXT NOT NULL DEFAULT '';
-- Labels a join token gives the hosts it enrolls (JSON object): the labels that selectors match
-- come from the admin who made the token, never from the agent's word alone.
ALTER TABLE join_tokens ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
UPDATE hosts SET cluster_id = (
    SELECT MIN(a.cluster_id) FROM assignments a WHERE a.host_name = hosts.name
) WHERE (SELECT COUNT(DISTINCT a.cluster_id) FROM assignments a WHERE a.host_name = hosts.name) = 1;
-- Events are rate-limited per host (counted over the last minute) and pruned by age and count.
CREATE INDEX events_host ON events (host_name, created_at);
CREATE INDEX events_created ON events (created_at);
-- Clusters an admin admitted a host to besides its own (muster host admit): their components,
-- and so their secrets, may go there too. Removed with the host or the cluster.
CREATE TABLE host_admissions (
    host_name TEXT NOT NULL,
    cluster_id TEXT NOT NULL REFERENCES clusters (id) ON DELETE CASCADE,
    admitted_at BIGINT NOT NULL,
    PRIMARY KEY (host_name, cluster_id)
);
