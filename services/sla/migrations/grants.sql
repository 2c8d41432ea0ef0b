-- Re-applied after every migration run (after the log's own grants): what the services'
-- role may do on sla's tables.
GRANT SELECT, INSERT, UPDATE ON sla_clock TO {app_role};
GRANT SELECT, INSERT, UPDATE ON sla_case TO {app_role};
GRANT SELECT, INSERT ON sla_input TO {app_role};
