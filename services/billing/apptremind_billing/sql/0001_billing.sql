-- billing-service schema: plans and their entitlements (data, seeded here), one subscription per business,
-- usage counters per meter and billing period with their reservations, and the Stripe events already
-- processed. Every tenant table leads with business_id.

CREATE TABLE plan (
    plan_id     text    PRIMARY KEY CHECK (plan_id ~ '^[a-z][a-z0-9_]{0,31}$'),
    name        text    NOT NULL,
    rank        integer NOT NULL UNIQUE,
    -- Monthly list price in minor units; the Stripe price id per plan comes from settings.
    price_minor bigint  NOT NULL CHECK (price_minor >= 0),
    currency    text    NOT NULL CHECK (currency ~ '^[A-Z]{3}$')
);

CREATE TABLE plan_entitlement (
    plan_id     text   NOT NULL REFERENCES plan (plan_id),
    feature     text   NOT NULL CHECK (feature ~ '^[a-z][a-z0-9_]{0,63}$'),
    -- -1 is unlimited; on/off features use 0 and 1.
    limit_value bigint NOT NULL CHECK (limit_value >= -1),
    PRIMARY KEY (plan_id, feature)
);

INSERT INTO plan (plan_id, name, rank, price_minor, currency) VALUES
    ('free', 'Free', 0, 0, 'EUR'),
    ('pro', 'Pro', 1, 2900, 'EUR'),
    ('business', 'Business', 2, 7900, 'EUR');

INSERT INTO plan_entitlement (plan_id, feature, limit_value) VALUES
    ('free', 'staff_seats', 1),
    ('free', 'sms_per_month', 10),
    ('free', 'custom_templates', 0),
    ('pro', 'staff_seats', 5),
    ('pro', 'sms_per_month', 500),
    ('pro', 'custom_templates', 1),
    ('business', 'staff_seats', -1),
    ('business', 'sms_per_month', 5000),
    ('business', 'custom_templates', 1);

-- A business without a row is on the free plan; the row appears with its first checkout, reservation or
-- Stripe event.
CREATE TABLE subscription (
    business_id            uuid        PRIMARY KEY,
    -- The plan in force now.
    plan_id                text        NOT NULL REFERENCES plan (plan_id),
    -- The plan the Stripe subscription is for (kept while past due or downgraded, so a late payment restores it).
    paid_plan_id           text        REFERENCES plan (plan_id),
    status                 text        NOT NULL
        CHECK (status IN ('free', 'active', 'trialing', 'past_due', 'canceled', 'incomplete')),
    stripe_customer_id     text,
    stripe_subscription_id text,
    current_period_end     timestamptz,
    cancel_at_period_end   boolean     NOT NULL DEFAULT false,
    grace_until            timestamptz,
    -- The Stripe event time and type rank of the last state applied: older deliveries do not override it
    -- (docs/adr/0012-billing-entitlements-and-webhooks.md).
    stripe_state_at        timestamptz,
    stripe_state_rank      integer     NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'past_due' OR grace_until IS NOT NULL)
);
-- Webhooks name the Stripe customer or subscription; these find the business.
CREATE UNIQUE INDEX subscription_stripe_customer ON subscription (stripe_customer_id)
    WHERE stripe_customer_id IS NOT NULL;
CREATE INDEX subscription_stripe_subscription ON subscription (stripe_subscription_id)
    WHERE stripe_subscription_id IS NOT NULL;
CREATE INDEX subscription_grace ON subscription (grace_until) WHERE status = 'past_due';

-- One counter per business, meter and billing period (calendar month, UTC). `reserved` holds units of
-- reservations not yet committed, released or expired; the conditional UPDATE in usage.py keeps
-- used + reserved within the plan's limit.
CREATE TABLE usage_period (
    business_id  uuid        NOT NULL,
    meter        text        NOT NULL,
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL,
    used         bigint      NOT NULL DEFAULT 0 CHECK (used >= 0),
    reserved     bigint      NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    PRIMARY KEY (business_id, meter, period_start)
);

CREATE TABLE usage_reservation (
    business_id    uuid        NOT NULL,
    reservation_id uuid        NOT NULL,
    meter          text        NOT NULL,
    period_start   timestamptz NOT NULL,
    quantity       bigint      NOT NULL CHECK (quantity > 0),
    status         text        NOT NULL CHECK (status IN ('reserved', 'committed', 'released', 'expired')),
    expires_at     timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (business_id, reservation_id),
    FOREIGN KEY (business_id, meter, period_start) REFERENCES usage_period (business_id, meter, period_start)
);
CREATE INDEX usage_reservation_open ON usage_reservation (business_id, meter, expires_at)
    WHERE status = 'reserved';
CREATE INDEX usage_reservation_expiry ON usage_reservation (expires_at) WHERE status = 'reserved';

-- Stripe delivers at least once: an event id seen here has had its effect.
CREATE TABLE stripe_event (
    event_id      text        PRIMARY KEY,
    event_type    text        NOT NULL,
    business_id   uuid,
    event_created timestamptz NOT NULL,
    applied       boolean     NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now()
);
