DROP INDEX tasks_due;
ALTER TABLE tasks DROP COLUMN expires_at;
