-- The platform's tables in every service database: the transactional outbox and the consumer inbox.

CREATE TABLE outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic        text        NOT NULL,
    -- The Kafka key: business_id, so one tenant's events stay in order on one partition.
    key          text        NOT NULL,
    payload      bytea       NOT NULL,
    headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

-- The relay's scan: unpublished rows in id order.
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
-- The pruner's scan.
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;

-- One row that a relay locks (FOR UPDATE) for the whole of a publish batch: at most one relay publishes
-- at a time, and a relay that dies releases it with its connection. See docs/adr/0004-outbox-relay.md.
CREATE TABLE outbox_relay_lock (
    name text PRIMARY KEY
);
INSERT INTO outbox_relay_lock (name) VALUES ('relay');

CREATE TABLE inbox (
    consumer     text        NOT NULL,
    message_id   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);
