-- One row that /healthz rewrites: a health check that only read would call a store healthy that
-- cannot write (a full disk under SQLite, a read-only replica).
CREATE TABLE store_probe (
    id INTEGER NOT NULL PRIMARY KEY,
    written_at BIGINT NOT NULL
);
INSERT INTO store_probe (id, written_at) VALUES (1, 0);
