-- tenant-mcp 0001: the tenant_configs table, or only tenant-mcp's columns on the platform's own.
--
-- What this migration adds is recorded in tenant_mcp.schema_changes, so that the down migration
-- removes exactly that and nothing the platform owns. A pre-existing tenant_configs must have a
-- tenant_id column (text, varchar or uuid) with a unique index of its own: tenant-mcp keeps one
-- row per tenant and never adds indexes or constraints to a table it does not own.

CREATE SCHEMA IF NOT EXISTS tenant_mcp;

CREATE TABLE tenant_mcp.schema_changes (
    migration bigint NOT NULL,
    change    text   NOT NULL,
    PRIMARY KEY (migration, change)
);
COMMENT ON TABLE tenant_mcp.schema_changes IS
    'What tenant-mcp migrations added to objects they may not own; read by the down migrations.';

DO $$
DECLARE
    tenant_attnum smallint;
    tenant_type   text;
    col           record;
    existing_type text;
BEGIN
    IF to_regclass('tenant_configs') IS NULL THEN
        CREATE TABLE tenant_configs (
            tenant_id  text PRIMARY KEY CHECK (tenant_id <> ''),
            created_at timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON TABLE tenant_configs IS 'Per-tenant settings; created by tenant-mcp.';
        INSERT INTO tenant_mcp.schema_changes VALUES (1, 'table');
    ELSE
        SELECT a.attnum, format_type(a.atttypid, a.atttypmod)
          INTO tenant_attnum, tenant_type
          FROM pg_attribute a
         WHERE a.attrelid = 'tenant_configs'::regclass AND a.attname = 'tenant_id'
           AND NOT a.attisdropped;
        IF tenant_attnum IS NULL THEN
            RAISE EXCEPTION 'tenant_configs exists but has no tenant_id column'
                USING HINT = 'tenant-mcp keys its rows by tenant_id; add the column or rename the platform''s tenant key column';
        END IF;
        IF tenant_type NOT IN ('text', 'uuid') AND tenant_type NOT LIKE 'character varying%' THEN
            RAISE EXCEPTION 'tenant_configs.tenant_id is of type %, expected text, varchar or uuid', tenant_type;
        END IF;
        IF NOT EXISTS (
            SELECT 1 FROM pg_index i
             WHERE i.indrelid = 'tenant_configs'::regclass AND i.indisunique
               AND i.indnkeyatts = 1 AND i.indkey[0] = tenant_attnum AND i.indpred IS NULL
        ) THEN
            RAISE EXCEPTION 'tenant_configs.tenant_id has no unique index'
                USING HINT = 'tenant-mcp keeps one row per tenant: make tenant_id the primary key or give it a unique index, then run the migration again';
        END IF;
    END IF;

    FOR col IN
        SELECT * FROM (VALUES
            ('mcp_server_config',     'jsonb'),
            ('mcp_config_version',    'bigint'),
            ('mcp_config_updated_at', 'timestamp with time zone')
        ) AS c(name, type)
    LOOP
        SELECT format_type(a.atttypid, a.atttypmod) INTO existing_type
          FROM pg_attribute a
         WHERE a.attrelid = 'tenant_configs'::regclass AND a.attname = col.name
           AND NOT a.attisdropped;
        IF existing_type IS NULL THEN
            EXECUTE format('ALTER TABLE tenant_configs ADD COLUMN %I %s', col.name, col.type);
            INSERT INTO tenant_mcp.schema_changes VALUES (1, 'column ' || col.name);
        ELSIF existing_type <> col.type THEN
            RAISE EXCEPTION 'tenant_configs.% exists with type %, expected %', col.name, existing_type, col.type
                USING HINT = 'tenant-mcp does not rewrite columns it did not create';
        END IF;
    END LOOP;
END
$$;

COMMENT ON COLUMN tenant_configs.mcp_server_config IS
    'tenant-mcp: the tenant''s active server config (format tenant-mcp.mirror.v1), credentials in AES-256-GCM envelopes; NULL when the tenant has none.';
COMMENT ON COLUMN tenant_configs.mcp_config_version IS
    'tenant-mcp: version of mcp_server_config; a writer never replaces a newer version with an older one.';
COMMENT ON COLUMN tenant_configs.mcp_config_updated_at IS
    'tenant-mcp: when mcp_server_config last changed.';
