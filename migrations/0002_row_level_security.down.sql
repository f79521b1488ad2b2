-- tenant-mcp 0002 down: drop tenant-mcp's policies and grants; restore row-level security to
-- what it was before 0002; drop the roles 0002 created where nothing else still uses them.

DROP POLICY IF EXISTS tenant_mcp_own_tenant ON tenant_configs;
DROP POLICY IF EXISTS tenant_mcp_uber_admin_reads_all ON tenant_configs;
DROP POLICY IF EXISTS tenant_mcp_controller_writes_all ON tenant_configs;

REVOKE ALL ON tenant_configs FROM tenant_mcp_controller, tenant_mcp_uber_admin, tenant_mcp_tenant;
REVOKE ALL ON SCHEMA tenant_mcp FROM tenant_mcp_controller, tenant_mcp_uber_admin;

DO $$
DECLARE
    entry text;
BEGIN
    IF EXISTS (SELECT 1 FROM tenant_mcp.schema_changes WHERE migration = 2 AND change = 'rls forced') THEN
        ALTER TABLE tenant_configs NO FORCE ROW LEVEL SECURITY;
    END IF;
    IF EXISTS (SELECT 1 FROM tenant_mcp.schema_changes WHERE migration = 2 AND change = 'rls enabled') THEN
        ALTER TABLE tenant_configs DISABLE ROW LEVEL SECURITY;
    END IF;

    FOR entry IN SELECT c.change FROM tenant_mcp.schema_changes c WHERE c.migration = 2 AND c.change LIKE 'role %'
    LOOP
        BEGIN
            EXECUTE format('DROP ROLE %I', substr(entry, 6));
        EXCEPTION WHEN dependent_objects_still_exist THEN
            -- Another database of this cluster still grants it something.
            RAISE NOTICE 'keeping role %: %', substr(entry, 6), SQLERRM;
        END;
    END LOOP;

    DELETE FROM tenant_mcp.schema_changes WHERE migration = 2;
END
$$;
