-- intake: the cases it opened (for the same-customer, same-subject window), chat sessions (for
-- bursts) and the customer directory. Thread keys stay in intake_thread (0002).

CREATE TABLE intake_case (
    case_id         text        PRIMARY KEY,
    -- "customer:<id>", "email:<address>", "phone:<E.164>": any of them finds the case
    customer_keys   text[]      NOT NULL,
    subject_key     text        NOT NULL DEFAULT '',
    channel         text        NOT NULL,
    opened_at       timestamptz NOT NULL,
    last_contact_at timestamptz NOT NULL
);
CREATE INDEX intake_case_customer_idx ON intake_case USING gin (customer_keys);

-- The chat contact that messages of a session join while they come in a burst.
CREATE TABLE intake_chat_session (
    session_id         text        PRIMARY KEY,
    case_id            text        NOT NULL,
    contact_id         text        NOT NULL,
    contact_started_at timestamptz NOT NULL,
    last_message_at    timestamptz NOT NULL
);

-- Customer directory, filled by the business (CRM sync); intake only reads it.
CREATE TABLE intake_customer (
    customer_id text    PRIMARY KEY,
    names       text[]  NOT NULL DEFAULT '{}',
    emails      text[]  NOT NULL DEFAULT '{}',  -- lower-case
    phones      text[]  NOT NULL DEFAULT '{}',  -- E.164
    tier        text,
    verified    boolean NOT NULL DEFAULT false
);
CREATE INDEX intake_customer_emails_idx ON intake_customer USING gin (emails);
CREATE INDEX intake_customer_phones_idx ON intake_customer USING gin (phones);
