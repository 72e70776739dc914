-- Which server replica owns what (an experiment's actor, a deployment's rollout): one row per owned
-- thing, held until `expires_at` and renewed while the holder lives. `token` goes up by one each time the
-- lease changes hands (a fencing token).
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX leases_holder ON leases (holder);
