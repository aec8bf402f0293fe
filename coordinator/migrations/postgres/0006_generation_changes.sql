-- When each host's generation last moved: a coordinator finds the hosts to wake with one indexed
-- query for all its watch streams, instead of each stream polling its own host.
ALTER TABLE hosts ADD COLUMN generation_changed_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX hosts_generation_changed_at ON hosts (generation_changed_at);

-- Every coordinator LISTENs on muster_generation: a change committed through one wakes the watch
-- streams another holds, delivered at commit. The payload is "host id:generation", or "host id:"
-- when the host was removed.
CREATE FUNCTION muster_notify_generation() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('muster_generation', OLD.id || ':');
    ELSE
        PERFORM pg_notify('muster_generation', NEW.id || ':' || NEW.generation);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER hosts_generation_notify
    AFTER UPDATE OF generation ON hosts
    FOR EACH ROW WHEN (OLD.generation IS DISTINCT FROM NEW.generation)
    EXECUTE FUNCTION muster_notify_generation();

CREATE TRIGGER hosts_removed_notify
    AFTER DELETE ON hosts
    FOR EACH ROW EXECUTE FUNCTION muster_notify_generation();
