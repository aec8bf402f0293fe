-- The Zato installations a host's agent names (`default`, its `zato_bin`, then the keys of its
-- agent.toml [zato_installs]), comma-separated, as it last reported them; NULL or empty from an
-- agent before them. A cluster's `zato.install` server setting must name one on every host of
-- its servers.
ALTER TABLE hosts ADD COLUMN zato_installs TEXT;
