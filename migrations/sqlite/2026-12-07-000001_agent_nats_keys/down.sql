DROP TABLE agent_nats_keys;
