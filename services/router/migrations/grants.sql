-- Re-applied after every migration run (after the log's own grants): what the services'
-- role may do on router's tables.
GRANT SELECT, INSERT, UPDATE ON router_agent TO {app_role};
GRANT SELECT, INSERT, UPDATE ON router_offer TO {app_role};
GRANT SELECT, INSERT, UPDATE ON router_case TO {app_role};
GRANT SELECT, INSERT ON router_contact TO {app_role};
GRANT SELECT, INSERT, UPDATE ON router_leader TO {app_role};
