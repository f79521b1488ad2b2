-- tenant-mcp 0002: roles, least-privilege grants and row-level security on tenant_configs.
--
-- Roles (NOLOGIN groups; grant them to login roles, see docs/database.md):
--   tenant_mcp_controller  the controller and `tenant-mcp keys rotate`: reads and writes
--                          tenant-mcp's columns of every row, nothing else;
--   tenant_mcp_uber_admin  reads every row;
--   tenant_mcp_tenant      reads its own tenant's row (app.tenant_id).
-- Every other session, the table owner included (FORCE), sees and changes only the row whose
-- tenant_id equals current_setting('app.tenant_id'), and nothing when it is unset. Superusers and
-- BYPASSRLS roles bypass row-level security in Postgres: never connect an application as one.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['tenant_mcp_controller', 'tenant_mcp_uber_admin', 'tenant_mcp_tenant']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            INSERT INTO tenant_mcp.schema_changes VALUES (2, 'role ' || role_name);
        END IF;
    END LOOP;

    IF NOT (SELECT relrowsecurity FROM pg_class WHERE oid = 'tenant_configs'::regclass) THEN
        ALTER TABLE tenant_configs ENABLE ROW LEVEL SECURITY;
        INSERT INTO tenant_mcp.schema_changes VALUES (2, 'rls enabled');
    END IF;
    IF NOT (SELECT relforcerowsecurity FROM pg_class WHERE oid = 'tenant_configs'::regclass) THEN
        ALTER TABLE tenant_configs FORCE ROW LEVEL SECURITY;
        INSERT INTO tenant_mcp.schema_changes VALUES (2, 'rls forced');
    END IF;
END
$$;

CREATE POLICY tenant_mcp_own_tenant ON tenant_configs
    AS PERMISSIVE FOR ALL TO PUBLIC
    USING (tenant_id::text = current_setting('app.tenant_id', true))
    WITH CHECK (tenant_id::text = current_setting('app.tenant_id', true));

CREATE POLICY tenant_mcp_uber_admin_reads_all ON tenant_configs
    AS PERMISSIVE FOR SELECT TO tenant_mcp_uber_admin
    USING (true);

CREATE POLICY tenant_mcp_controller_writes_all ON tenant_configs
    AS PERMISSIVE FOR ALL TO tenant_mcp_controller
    USING (true) WITH CHECK (true);

GRANT USAGE ON SCHEMA tenant_mcp TO tenant_mcp_controller, tenant_mcp_uber_admin;
GRANT SELECT ON tenant_configs TO tenant_mcp_uber_admin, tenant_mcp_tenant;
GRANT SELECT (tenant_id, mcp_server_config, mcp_config_version, mcp_config_updated_at),
      INSERT (tenant_id, mcp_server_config, mcp_config_version, mcp_config_updated_at),
      UPDATE (mcp_server_config, mcp_config_version, mcp_config_updated_at)
   ON tenant_configs TO tenant_mcp_controller;
