ALTER TABLE metric_samples DROP COLUMN batch_seq;
