-- tenant-mcp 0005: a row holding tenant-mcp's columns stays with its tenant.
--
-- Row-level security reads a row under the app.tenant_id a statement starts with and checks
-- the new row under the one it ends with, and set_config(..., true) in an UPDATE's SET list
-- changes the setting in between: a platform role could so move a row — mirror document,
-- version and all — to another tenant, or swap two tenants' rows in three steps. The column
-- guard (0003) sees the mcp_* columns unchanged and lets that through. So a change of
-- tenant_id on a row whose mcp_server_config, mcp_config_version or mcp_config_updated_at is
-- set is refused for every role but tenant_mcp_controller and superusers. (A moved document
-- would not decrypt — its associated data names the tenant — but a moved version would hold
-- off the controller's writes for the new tenant.)

CREATE FUNCTION tenant_mcp.guard_mirror_tenant() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    IF pg_has_role(current_user, 'tenant_mcp_controller', 'USAGE')
       OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN NEW;
    END IF;
    IF NEW.tenant_id IS NOT DISTINCT FROM OLD.tenant_id
       OR (OLD.mcp_server_config IS NULL AND OLD.mcp_config_version IS NULL
           AND OLD.mcp_config_updated_at IS NULL) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'role % may not move the row of tenant % to tenant %: it holds tenant-mcp''s mirror columns',
            current_user, OLD.tenant_id, NEW.tenant_id
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'a tenant''s mirror row stays with its tenant_id; delete the tenant''s TenantMcpConfig first if the row must go';
END
$$;
COMMENT ON FUNCTION tenant_mcp.guard_mirror_tenant() IS
    'tenant-mcp: refuses a change of tenant_id on rows holding mirror columns by roles other than tenant_mcp_controller.';

CREATE TRIGGER tenant_mcp_guard_mirror_tenant
    BEFORE UPDATE OF tenant_id ON tenant_configs
    FOR EACH ROW EXECUTE FUNCTION tenant_mcp.guard_mirror_tenant();
