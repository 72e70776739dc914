-- The agents an experiment resolved its target to when it started (JSON array of ids), and why it is
-- in its current phase (e.g. the reason it failed).
ALTER TABLE experiments ADD COLUMN target_agents TEXT;
ALTER TABLE experiments ADD COLUMN phase_reason TEXT;
