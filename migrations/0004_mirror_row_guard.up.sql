-- tenant-mcp 0004: the mirror's rows against DELETE and TRUNCATE.
--
-- The column guard (0003) stops a platform role from changing the mcp_* columns, but a role
-- with DELETE on tenant_configs could remove a tenant's row and insert it again without them,
-- and TRUNCATE (where granted) empties the table past row-level security and row triggers. So:
-- a row whose mcp_server_config is set may be deleted only by tenant_mcp_controller or a
-- superuser (delete the TenantMcpConfig first: the controller clears the document, then the
-- row is the platform's to delete), and TRUNCATE by them alone.

CREATE FUNCTION tenant_mcp.guard_mirror_rows() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    IF pg_has_role(current_user, 'tenant_mcp_controller', 'USAGE')
       OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        IF TG_LEVEL = 'STATEMENT' THEN
            RETURN NULL;
        END IF;
        RETURN OLD;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'role % may not truncate tenant_configs: it holds tenant-mcp''s mirror documents',
                current_user
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'delete the rows instead; a row with a mirror document goes once its TenantMcpConfig is deleted';
    END IF;
    IF OLD.mcp_server_config IS NULL THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'role % may not delete the row of tenant %: it holds tenant-mcp''s mirror document',
            current_user, OLD.tenant_id
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'delete the tenant''s TenantMcpConfig first: the controller clears the document, and the row can be deleted then';
END
$$;
COMMENT ON FUNCTION tenant_mcp.guard_mirror_rows() IS
    'tenant-mcp: refuses DELETE of rows holding a mirror document, and TRUNCATE, by roles other than tenant_mcp_controller.';

CREATE TRIGGER tenant_mcp_guard_mirror_rows
    BEFORE DELETE ON tenant_configs
    FOR EACH ROW EXECUTE FUNCTION tenant_mcp.guard_mirror_rows();

CREATE TRIGGER tenant_mcp_guard_truncate
    BEFORE TRUNCATE ON tenant_configs
    FOR EACH STATEMENT EXECUTE FUNCTION tenant_mcp.guard_mirror_rows();
