ALTER TABLE experiments DROP COLUMN phase_reason;
ALTER TABLE experiments DROP COLUMN target_agents;
