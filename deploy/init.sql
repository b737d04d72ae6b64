-- Roles of the distributed stack (compose.yaml), as the README's Deployment section describes: a schema owner
-- that auth migrates with, auth's own role, and one restricted role per other service. None is a superuser:
-- row-level security applies to every one of them. Local development passwords only.
CREATE ROLE smb_owner LOGIN PASSWORD 'smb_owner' NOSUPERUSER NOBYPASSRLS;
CREATE ROLE smb_auth LOGIN PASSWORD 'smb_auth' NOSUPERUSER NOBYPASSRLS;
CREATE ROLE smb_orchestrator LOGIN PASSWORD 'smb_orchestrator' NOSUPERUSER NOBYPASSRLS;
CREATE ROLE smb_connectors LOGIN PASSWORD 'smb_connectors' NOSUPERUSER NOBYPASSRLS;
CREATE ROLE smb_workers LOGIN PASSWORD 'smb_workers' NOSUPERUSER NOBYPASSRLS;
CREATE DATABASE smb OWNER smb_owner;
