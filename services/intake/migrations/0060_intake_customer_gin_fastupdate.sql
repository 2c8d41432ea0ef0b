-- The customer-key index without GIN's pending list. With fastupdate (the default), new
-- entries wait in an unsorted list until a vacuum or 4 MB of them, and every search reads the
-- whole list: intake looks up the customer's open cases for every contact, and under load the
-- list was seldom empty (bench-e2e --pg-statements, saturation 10,000: 1.16 ms a look-up, 9 %
-- of PostgreSQL's statement time; 0.06 ms with the list empty). Each insert now updates the
-- index at once: a handful of keys per case.
ALTER INDEX intake_case_customer_idx SET (fastupdate = off);
SELECT gin_clean_pending_list('intake_case_customer_idx'::regclass);
