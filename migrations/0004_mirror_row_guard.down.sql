-- tenant-mcp 0004 down: rows holding a mirror document can be deleted, and the table
-- truncated, by whoever row-level security and the grants let.

DROP TRIGGER IF EXISTS tenant_mcp_guard_truncate ON tenant_configs;
DROP TRIGGER IF EXISTS tenant_mcp_guard_mirror_rows ON tenant_configs;
DROP FUNCTION IF EXISTS tenant_mcp.guard_mirror_rows();
