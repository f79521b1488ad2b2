-- tenant-mcp 0003 down: the column guard and the key check values go; the mcp_* columns are
-- writable again by whoever row-level security lets update a row.

DROP TRIGGER IF EXISTS tenant_mcp_guard_mcp_columns ON tenant_configs;
DROP FUNCTION IF EXISTS tenant_mcp.guard_mcp_columns();
DROP TABLE IF EXISTS tenant_mcp.key_checks;
