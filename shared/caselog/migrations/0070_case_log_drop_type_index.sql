-- No index on case_log(type). No service reads the log by type alone: every read is of one case
-- (its primary key) or one event (event_id). The planner nonetheless ANDed this index, which
-- holds every row of a type, into reads of one case's rows of a type ("the last
-- case.classified of this case", escalation's probe): a scan of all the log's rows of that
-- type for each case, 0.14 ms a case at 3,600 cases and growing with the log (EXPLAIN ANALYZE
-- in docs/benchmarks.md, issue 9), while the primary key finds the case's dozen rows at once.
-- And each appended row no longer pays for a second text index.
DROP INDEX IF EXISTS case_log_type_idx;
