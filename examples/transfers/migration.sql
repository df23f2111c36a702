-- The example's own tables. The idempotency layer's table comes from its migration.sql.
CREATE TABLE IF NOT EXISTS accounts (
  id text PRIMARY KEY,
  balance bigint NOT NULL CHECK (balance >= 0)
);
CREATE TABLE IF NOT EXISTS transfers (
  id text PRIMARY KEY,
  from_account text NOT NULL REFERENCES accounts (id),
  to_account text NOT NULL REFERENCES accounts (id),
  amount bigint NOT NULL CHECK (amount > 0),
  created_at timestamp with time zone NOT NULL DEFAULT now()
);
