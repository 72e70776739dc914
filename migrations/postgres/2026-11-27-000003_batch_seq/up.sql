-- The sequence number of the agent's batch each sample came in, so gaps (lost batches) can be seen.
ALTER TABLE metric_samples ADD COLUMN batch_seq BIGINT;
