-- Pending tasks past their deadline expire (status 'expired').
ALTER TABLE tasks ADD COLUMN expires_at TIMESTAMP;
CREATE INDEX tasks_due ON tasks (status, not_before);
