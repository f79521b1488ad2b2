-- tenant-mcp 0003: only tenant_mcp_controller writes tenant-mcp's columns, and the key check
-- values that tell whether a keyring still holds the keys the rows were sealed with.
--
-- Row-level security (0002) decides which rows a session reaches; the platform's own roles
-- usually may UPDATE their tenant's row. Column privileges cannot take back a table-wide
-- UPDATE grant, so a trigger refuses any change to mcp_server_config, mcp_config_version or
-- mcp_config_updated_at by a role that is neither a member of tenant_mcp_controller nor a
-- superuser. Every other column stays the platform's to change. A role that owns the table can
-- still drop the trigger (DDL): do not let the application own tenant_configs.

CREATE FUNCTION tenant_mcp.guard_mcp_columns() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    IF pg_has_role(current_user, 'tenant_mcp_controller', 'USAGE')
       OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.mcp_server_config IS NULL AND NEW.mcp_config_version IS NULL
           AND NEW.mcp_config_updated_at IS NULL THEN
            RETURN NEW;
        END IF;
    ELSIF (NEW.mcp_server_config, NEW.mcp_config_version, NEW.mcp_config_updated_at)
          IS NOT DISTINCT FROM
          (OLD.mcp_server_config, OLD.mcp_config_version, OLD.mcp_config_updated_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'role % may not set tenant_configs.mcp_server_config, mcp_config_version or mcp_config_updated_at of tenant %',
            current_user, NEW.tenant_id
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'only the tenant-mcp controller (role tenant_mcp_controller) writes these columns; change the TenantMcpConfig instead';
END
$$;
COMMENT ON FUNCTION tenant_mcp.guard_mcp_columns() IS
    'tenant-mcp: refuses changes to the mcp_* columns of tenant_configs by roles other than tenant_mcp_controller.';

CREATE TRIGGER tenant_mcp_guard_mcp_columns
    BEFORE INSERT OR UPDATE ON tenant_configs
    FOR EACH ROW EXECUTE FUNCTION tenant_mcp.guard_mcp_columns();

-- One row per key id the mirror has sealed with: a keyed digest of the key (never the key),
-- so a keys Secret regenerated under the same id is refused instead of sealing rows nobody
-- can open with the old key again.
CREATE TABLE tenant_mcp.key_checks (
    kid         text        PRIMARY KEY,
    check_value text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE tenant_mcp.key_checks IS
    'tenant-mcp: HMAC-SHA256 check values of the mirror''s encryption keys by key id (no key material).';
GRANT SELECT, INSERT ON tenant_mcp.key_checks TO tenant_mcp_controller;
GRANT SELECT ON tenant_mcp.key_checks TO tenant_mcp_uber_admin;
