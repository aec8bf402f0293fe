-- The settings of a cluster's scheduler and dashboards, as JSON by role
-- ({"scheduler": {"logging.zato": "DEBUG"}, "web-admin": {"TIME_ZONE": "UTC"}};
-- `muster configure scheduler|web-admin`); NULL or a role left out: none. The servers' are
-- server_settings.
ALTER TABLE clusters ADD COLUMN role_settings TEXT;
