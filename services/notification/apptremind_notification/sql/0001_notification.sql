-- notification-service schema: templates, the delivery log, opt-outs, and the per-day delivery counters.

-- A business's own wording for one (kind, channel, locale); without one the built-in default is used.
CREATE TABLE template (
    business_id uuid NOT NULL,
    template_id uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('reminder', 'confirmation')),
    channel     text NOT NULL CHECK (channel IN ('email', 'sms')),
    locale      text NOT NULL,
    subject     text NOT NULL DEFAULT '',
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (business_id, template_id),
    UNIQUE (business_id, kind, channel, locale)
);

-- One message we mean to send, keyed by the caller's idempotency key (a reminder job's
-- appointment_id|remind_at|channel, or appointment_id|confirmation|email). The row is committed as
-- 'sending' before the provider is called, so a crash between the provider's acceptance and 'sent'
-- resends at most once (see the README).
CREATE TABLE delivery (
    business_id         uuid NOT NULL,
    delivery_id         uuid NOT NULL,
    idempotency_key     text NOT NULL,
    appointment_id      uuid NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('reminder', 'confirmation')),
    channel             text NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient           text NOT NULL,
    status              text NOT NULL CHECK (
        status IN ('queued', 'sending', 'sent', 'delivered', 'failed', 'skipped')
    ),
    skip_reason         text NOT NULL DEFAULT '',
    provider            text NOT NULL DEFAULT '',
    provider_message_id text NOT NULL DEFAULT '',
    attempts            integer NOT NULL DEFAULT 0,
    last_error          text NOT NULL DEFAULT '',
    -- The customer's self-service token: replies (C / X) to an SMS reminder act with it.
    manage_token        text NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    PRIMARY KEY (business_id, delivery_id),
    UNIQUE (business_id, idempotency_key)
);

-- Provider callbacks name the delivery by its id (our reference) or by the provider's message id.
CREATE UNIQUE INDEX delivery_by_id ON delivery (delivery_id);
CREATE INDEX delivery_by_provider_message ON delivery (provider, provider_message_id)
    WHERE provider_message_id <> '';
CREATE INDEX delivery_by_appointment ON delivery (business_id, appointment_id, delivery_id);
-- An inbound reply acts on the latest SMS reminder sent to that number.
CREATE INDEX delivery_sms_reminders ON delivery (recipient, sent_at DESC)
    WHERE channel = 'sms' AND kind = 'reminder' AND sent_at IS NOT NULL;

-- A business's own opt-outs (set by its managers).
CREATE TABLE opt_out (
    business_id uuid NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('email', 'sms')),
    address     text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (business_id, channel, address)
);

-- Numbers that replied STOP: carriers require that no business texts them again until they reply START,
-- so this list is platform-wide, not per business.
CREATE TABLE sms_stop (
    address    text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Delivery outcomes per business, day (UTC) and channel, for the dashboard; fed by the status agent in
-- streams/ (sent, failed) and by provider callbacks (delivered, undelivered) and the pipeline (skipped).
CREATE TABLE delivery_daily (
    business_id uuid NOT NULL,
    day         date NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('email', 'sms')),
    sent        integer NOT NULL DEFAULT 0,
    delivered   integer NOT NULL DEFAULT 0,
    failed      integer NOT NULL DEFAULT 0,
    skipped     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (business_id, day, channel)
);
