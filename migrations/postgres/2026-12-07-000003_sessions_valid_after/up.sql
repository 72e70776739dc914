-- A password change ends every session of the user: access tokens issued before this time are refused
-- (their refresh tokens are revoked in the same transaction).
ALTER TABLE users ADD COLUMN sessions_valid_after TIMESTAMP;
