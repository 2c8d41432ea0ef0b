-- Router (issue 4): durable routing state, so a restart loses or doubles no offer.

-- Agents: misses in a row (N → set away) and since when they are idle (longest idle first).
ALTER TABLE router_agent ADD COLUMN missed integer NOT NULL DEFAULT 0;
ALTER TABLE router_agent ADD COLUMN idle_since timestamptz NOT NULL DEFAULT '2000-01-01T00:00:00Z';

-- Offers: their expiry (claimed by the timer loop) and 'withdrawn' when the agent logs out.
-- An offer in state 'offered' or 'accepted' is the agent's occupancy on its channel.
ALTER TABLE router_offer ADD COLUMN expires_at timestamptz;
ALTER TABLE router_offer ADD COLUMN answered_at timestamptz;
ALTER TABLE router_offer DROP CONSTRAINT router_offer_state_check;
ALTER TABLE router_offer ADD CONSTRAINT router_offer_state_check
    CHECK (state IN ('offered', 'accepted', 'declined', 'expired', 'released', 'withdrawn'));
CREATE INDEX router_offer_due_idx ON router_offer (expires_at) WHERE state = 'offered';

-- Cases as the router sees them: waiting in a queue, offered, assigned or solved.
CREATE TABLE router_case (
    case_id         text        PRIMARY KEY,
    state           text        NOT NULL
        CHECK (state IN ('waiting', 'offered', 'assigned', 'solved')),
    channel         text        NOT NULL,
    classification  jsonb       NOT NULL,
    -- the waiting case: requirements, priority, queued_at, previous agent and exclusions
    waiting         jsonb       NOT NULL,
    queue           text        NOT NULL,
    step            integer     NOT NULL DEFAULT 0,
    queued_at       timestamptz NOT NULL,
    -- the next relaxation step, overflow or end of the previous agent's hold
    next_check_at   timestamptz,
    -- counts timer re-evaluations, so each has its own deterministic event ids
    generation      integer     NOT NULL DEFAULT 0,
    last_agent      text,
    -- the customer's words so far, to classify again when a contact gets more text
    contact_text    text        NOT NULL DEFAULT '',
    customer_key    text,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX router_case_due_idx ON router_case (next_check_at) WHERE state = 'waiting';
CREATE INDEX router_case_waiting_idx ON router_case (queue) WHERE state = 'waiting';

-- Contacts by customer and intent, for repeat-contact detection.
CREATE TABLE router_contact (
    contact_id    text        PRIMARY KEY,
    customer_key  text        NOT NULL,
    case_id       text        NOT NULL,
    intent        text        NOT NULL,
    received_at   timestamptz NOT NULL
);
CREATE INDEX router_contact_customer_idx ON router_contact (customer_key, received_at);
