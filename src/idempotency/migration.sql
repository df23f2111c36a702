-- The idempotency layer's table, for hosts that do not generate it with drizzle-kit from
-- schema.ts. Add a foreign key on tenant_id to your tenants table if you have one, as
-- DEFERRABLE INITIALLY DEFERRED: the claim inserts the key's record first, and an immediate check
-- would make it wait on the tenant's row too.
CREATE TABLE IF NOT EXISTS "idempotency_keys" (
	"tenant_id" text NOT NULL,
	"key" text NOT NULL,
	"record_id" text NOT NULL,
	"fingerprint" text NOT NULL,
	"method" text NOT NULL,
	"path" text NOT NULL,
	"recovery_point" text NOT NULL,
	"locked_until" timestamp with time zone,
	"attempt" integer DEFAULT 1 NOT NULL,
	"response_status" integer,
	"response_headers" jsonb,
	"response_body" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	CONSTRAINT "idempotency_keys_tenant_id_key_pk" PRIMARY KEY("tenant_id","key")
);
CREATE INDEX IF NOT EXISTS "idempotency_keys_expires_at_idx"
	ON "idempotency_keys" USING btree ("expires_at");
CREATE INDEX IF NOT EXISTS "idempotency_keys_unfinished_idx"
	ON "idempotency_keys" USING btree ("locked_until")
	WHERE recovery_point NOT IN ('started', 'finished');
