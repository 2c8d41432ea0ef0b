-- Re-applied after every migration run (after the log's own grants): what the services'
-- role may do on escalation's tables.
GRANT SELECT, INSERT, UPDATE ON escalation TO {app_role};
GRANT SELECT, INSERT, UPDATE ON escalation_delivery TO {app_role};
GRANT SELECT, INSERT, UPDATE ON escalation_digest_item TO {app_role};
GRANT SELECT, INSERT ON escalation_input TO {app_role};
