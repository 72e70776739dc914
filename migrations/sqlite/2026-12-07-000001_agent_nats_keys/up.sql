-- The NATS user keys Phoenix signed a JWT for (operator mode, `bus.nats_trust_file`): one agent has at
-- most one live key. A key is revoked with its agent's credential, when the agent is removed, or when
-- the agent registers a new key; revoked keys go into the NATS account's revocations. No foreign key on
-- purpose: a revocation must outlive the agent it belonged to.
CREATE TABLE agent_nats_keys (
    public_key TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    issued_at  TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
CREATE INDEX agent_nats_keys_agent ON agent_nats_keys (agent_id);
CREATE INDEX agent_nats_keys_revoked ON agent_nats_keys (revoked_at);
