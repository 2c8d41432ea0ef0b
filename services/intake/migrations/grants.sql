-- Re-applied after every migration run (after the log's own grants): what the services'
-- role may do on intake's tables.
GRANT SELECT, INSERT ON intake_thread TO {app_role};
GRANT SELECT, INSERT, UPDATE ON intake_case TO {app_role};
GRANT SELECT, INSERT, UPDATE ON intake_chat_session TO {app_role};
GRANT SELECT ON intake_customer TO {app_role};
GRANT SELECT, INSERT, UPDATE ON intake_suppressed TO {app_role};
