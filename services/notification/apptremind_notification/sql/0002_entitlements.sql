-- billing-service's entitlements in force per business, kept from billing.entitlements.changed.v1 (the
-- full set each time the plan in force changes). `changed_at` is the event's envelope time: an event older
-- than it changes nothing, so late or replayed deliveries cannot roll a plan back. No row means free.
CREATE TABLE business_entitlement (
    business_id uuid        PRIMARY KEY,
    plan        text        NOT NULL,
    -- feature -> limit, e.g. {"staff_seats": 5, "sms_per_month": 500, "custom_templates": 1}; -1 unlimited.
    limits      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    changed_at  timestamptz NOT NULL
);
