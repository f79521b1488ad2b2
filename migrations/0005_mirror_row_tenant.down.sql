-- tenant-mcp 0005 down: tenant_id of a row holding mirror columns may change again under
-- whatever row-level security lets through.

DROP TRIGGER IF EXISTS tenant_mcp_guard_mirror_tenant ON tenant_configs;
DROP FUNCTION IF EXISTS tenant_mcp.guard_mirror_tenant();
