-- The planner: which server the scheduler points at (chosen by health), and drained hosts.
ALTER TABLE clusters ADD COLUMN scheduler_target TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN drained BIGINT NOT NULL DEFAULT 0;
