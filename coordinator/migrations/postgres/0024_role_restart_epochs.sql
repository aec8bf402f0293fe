-- The restart epochs of a cluster's dashboards, load balancers and scheduler, as JSON
-- ({"web-admin": 1, "load-balancer": 1, "scheduler": 1}): one more for each rolling restart of
-- the role (`muster rollout restart --role ROLE`); NULL or a role left out: 0. The servers' is
-- restart_epoch.
ALTER TABLE clusters ADD COLUMN restart_epochs TEXT;
-- 1 when the component's agent restarts it at its turn in a rolling restart of its role and
-- reports its restart_epoch (ComponentStatus.rolls); an agent before that: 0.
ALTER TABLE component_status ADD COLUMN rolls BIGINT NOT NULL DEFAULT 0;
