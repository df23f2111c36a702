-- The idempotency claim inserts its key's record first, bounded by lock_timeout; an immediate
-- foreign key check would make it wait on the tenant's row as well. Checked at COMMIT instead.
-- (Re-added rather than altered: Citus refuses ALTER CONSTRAINT on distributed tables.)
ALTER TABLE "idempotency_keys" DROP CONSTRAINT "idempotency_keys_tenant_id_tenants_id_fk";--> statement-breakpoint
ALTER TABLE "idempotency_keys" ADD CONSTRAINT "idempotency_keys_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action DEFERRABLE INITIALLY DEFERRED;
