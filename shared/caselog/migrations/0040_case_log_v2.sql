-- Case log, hash version 2 (docs/architecture.md, "The case log"): every stored column in the
-- hash, RFC 8785 data, and a MAC per row keyed with its service's key, which the database does
-- not hold. Rows written before keep hash_version 1 and keep verifying with the old scheme.

-- Existing rows read 1 (a column added with a default keeps it for them without a rewrite);
-- from now on the writer states the version of every row.
ALTER TABLE case_log ADD COLUMN hash_version smallint NOT NULL DEFAULT 1;
ALTER TABLE case_log ALTER COLUMN hash_version DROP DEFAULT;
ALTER TABLE case_log ADD COLUMN key_id text;
ALTER TABLE case_log ADD COLUMN mac text;

-- New rows must be version 2 with a key id and a MAC: the services' role cannot slip in an
-- unkeyed version 1 row. NOT VALID: the rows already there are not checked. Its owner can drop
-- it; the signed checkpoints record this constraint and the triggers, and `log verify` reports
-- any change to them.
ALTER TABLE case_log ADD CONSTRAINT case_log_keyed_rows
    CHECK (hash_version >= 2 AND key_id IS NOT NULL AND mac IS NOT NULL) NOT VALID;

-- Checkpoints count the unkeyed rows (a number that must never grow again): cheap to count.
CREATE INDEX case_log_unkeyed_idx ON case_log (case_id) WHERE hash_version < 2;
