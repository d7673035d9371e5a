-- The paid booking saga's deposits: one row per appointment that needs one. `status` is where the deposit
-- stands for ApptRemind; `settle_action` is what Stripe must still be told (capture or cancel the intent),
-- set in the transaction that decides it and cleared once Stripe has done it, so a failed Stripe call is
-- retried by the settler (with backoff, under a lease in settle_after) and never forgotten.
CREATE TABLE deposit (
    business_id       uuid        NOT NULL,
    appointment_id    uuid        NOT NULL,
    amount_minor      bigint      NOT NULL CHECK (amount_minor >= 0),
    currency          text        NOT NULL,
    status            text        NOT NULL
        CHECK (status IN ('pending', 'authorized', 'failed', 'captured', 'released')),
    -- Empty for a release that arrived before the intent was made (the intent is then refused).
    payment_intent_id text        NOT NULL DEFAULT '',
    reason            text        NOT NULL DEFAULT '',
    settle_action     text        CHECK (settle_action IN ('capture', 'release')),
    settle_attempts   integer     NOT NULL DEFAULT 0,
    settle_error      text        NOT NULL DEFAULT '',
    settle_after      timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (business_id, appointment_id)
);
CREATE INDEX deposit_unsettled ON deposit (settle_after) WHERE settle_action IS NOT NULL;
