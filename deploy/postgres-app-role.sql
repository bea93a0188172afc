-- The portal's database roles (README, "Run it in production"). Two roles, neither a superuser:
--   portal_owner  owns the database and its tables; `manage.py migrate` runs as it, nothing else does.
--   portal_app    what the web processes and the workers connect as: reads and writes rows, owns nothing, so it
--                 cannot drop or alter a table, nor switch off the audit history's triggers (migrations 0007 and
--                 0013 refuse UPDATE, DELETE and TRUNCATE of portal_auditevent; only the table's owner or a
--                 superuser could switch them off, and 0013 lets a superuser TRUNCATE).
-- Create them once (as a superuser):
--   CREATE ROLE portal_owner LOGIN PASSWORD '...';
--   CREATE ROLE portal_app LOGIN PASSWORD '...';
--   CREATE DATABASE portal OWNER portal_owner;
-- then run this file as portal_owner in that database, after the first `manage.py migrate`:
--   psql "postgres://portal_owner@db/portal" -f deploy/postgres-app-role.sql
-- tests/test_production_stack.py runs the web process and the workers as a role granted exactly this.
GRANT USAGE ON SCHEMA public TO portal_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO portal_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO portal_app;
-- The audit history is appended to, never changed: the triggers refuse the rest, and so do the privileges.
REVOKE UPDATE, DELETE, TRUNCATE ON portal_auditevent FROM portal_app;
-- Tables and sequences later migrations create (as portal_owner) get the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO portal_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO portal_app;
