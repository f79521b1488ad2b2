-- tenant-mcp 0001 down: remove what 0001 added, and only that. A table tenant-mcp created is
-- dropped only while it holds nothing but tenant-mcp's columns; if the platform has since added
-- columns of its own, the table stays and only tenant-mcp's columns go.

DO $$
DECLARE
    entry        text;
    created      boolean;
    foreign_cols integer;
BEGIN
    created := EXISTS (SELECT 1 FROM tenant_mcp.schema_changes WHERE migration = 1 AND change = 'table');

    IF created THEN
        SELECT count(*) INTO foreign_cols
          FROM pg_attribute a
         WHERE a.attrelid = 'tenant_configs'::regclass AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attname NOT IN ('tenant_id', 'created_at', 'mcp_server_config',
                                 'mcp_config_version', 'mcp_config_updated_at');
        IF foreign_cols = 0 THEN
            DROP TABLE tenant_configs;
            DELETE FROM tenant_mcp.schema_changes WHERE migration = 1;
        ELSE
            RAISE NOTICE 'tenant_configs has % column(s) tenant-mcp did not create: keeping the table, dropping only tenant-mcp''s columns', foreign_cols;
        END IF;
    END IF;

    FOR entry IN SELECT c.change FROM tenant_mcp.schema_changes c WHERE c.migration = 1 AND c.change LIKE 'column %'
    LOOP
        EXECUTE format('ALTER TABLE tenant_configs DROP COLUMN IF EXISTS %I', substr(entry, 8));
    END LOOP;
END
$$;

DROP TABLE tenant_mcp.schema_changes;
-- The tenant_mcp schema stays: it holds the migration bookkeeping table itself.
