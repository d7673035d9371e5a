-- booking-service schema: the read model fed by business events, appointments, idempotency keys, reminders.
--
-- Read-model tables have no foreign keys on purpose: business events arrive on several topics, and Kafka
-- orders them only within one topic partition, so a service may be seen before its business. Every event
-- carries full state, so each table is a plain upsert keyed by its natural id.

CREATE TABLE business (
    business_id uuid PRIMARY KEY,
    name        text NOT NULL DEFAULT '',
    slug        text NOT NULL DEFAULT '',
    time_zone   text NOT NULL,
    currency    text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE staff (
    business_id uuid NOT NULL,
    staff_id    uuid NOT NULL,
    name        text NOT NULL,
    active      boolean NOT NULL,
    PRIMARY KEY (business_id, staff_id)
);

-- One staff member's weekly schedule; a schedule event replaces all rows of that staff member.
CREATE TABLE weekly_interval (
    business_id  uuid NOT NULL,
    staff_id     uuid NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('hours', 'break')),
    weekday      smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    start_minute smallint NOT NULL,
    end_minute   smallint NOT NULL,
    CHECK (0 <= start_minute AND start_minute < end_minute AND end_minute <= 1440),
    PRIMARY KEY (business_id, staff_id, kind, weekday, start_minute)
);

CREATE TABLE date_override (
    business_id uuid NOT NULL,
    override_id uuid NOT NULL,
    staff_id    uuid,  -- NULL: the whole business
    kind        text NOT NULL CHECK (kind IN ('time_off', 'holiday', 'extra_hours')),
    during      tstzrange NOT NULL,
    PRIMARY KEY (business_id, override_id)
);
CREATE INDEX date_override_during ON date_override USING gist (business_id, during);

CREATE TABLE service (
    business_id           uuid NOT NULL,
    service_id            uuid NOT NULL,
    name                  text NOT NULL,
    duration_minutes      integer NOT NULL CHECK (duration_minutes > 0),
    buffer_before_minutes integer NOT NULL CHECK (buffer_before_minutes >= 0),
    buffer_after_minutes  integer NOT NULL CHECK (buffer_after_minutes >= 0),
    active                boolean NOT NULL,
    PRIMARY KEY (business_id, service_id)
);

CREATE TABLE service_staff (
    business_id uuid NOT NULL,
    service_id  uuid NOT NULL,
    staff_id    uuid NOT NULL,
    PRIMARY KEY (business_id, service_id, staff_id)
);

CREATE TABLE reminder_policy (
    business_id     uuid PRIMARY KEY,
    offsets_minutes integer[] NOT NULL,
    channels        text[] NOT NULL,
    quiet_start     time,
    quiet_end       time
);

CREATE TABLE appointment (
    business_id     uuid NOT NULL,
    appointment_id  uuid NOT NULL,
    staff_id        uuid NOT NULL,
    service_id      uuid NOT NULL,
    start_time      timestamptz NOT NULL,
    end_time        timestamptz NOT NULL,
    -- (start - buffer_before, end + buffer_after): what the staff member is busy for.
    padded          tstzrange NOT NULL,
    status          text NOT NULL CHECK (status IN ('booked', 'cancelled', 'completed', 'no_show')),
    customer_name   text NOT NULL,
    customer_email  text NOT NULL DEFAULT '',
    customer_phone  text NOT NULL DEFAULT '',
    customer_time_zone text NOT NULL,
    customer_locale text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CHECK (end_time > start_time),
    PRIMARY KEY (business_id, appointment_id),
    -- Double booking is impossible by construction: two booked appointments of one staff member can never
    -- have overlapping padded ranges, whatever the application code does or however many race.
    CONSTRAINT appointment_no_overlap
        EXCLUDE USING gist (business_id WITH =, staff_id WITH =, padded WITH &&) WHERE (status = 'booked')
);
CREATE INDEX appointment_by_start ON appointment (business_id, start_time, appointment_id);
CREATE INDEX appointment_email ON appointment (business_id, customer_email) WHERE status = 'booked';
CREATE INDEX appointment_phone ON appointment (business_id, customer_phone) WHERE status = 'booked';

-- Idempotency keys of BookAppointment; rows older than 24 h are ignored by lookups and pruned.
CREATE TABLE idempotency_key (
    business_id    uuid NOT NULL,
    key            text NOT NULL,
    request_hash   text NOT NULL,
    appointment_id uuid NOT NULL,
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (business_id, key)
);
CREATE INDEX idempotency_key_created ON idempotency_key (created_at);

-- The reminders currently requested for an appointment, so cancel/reschedule cancel exactly those.
CREATE TABLE reminder (
    business_id     uuid NOT NULL,
    appointment_id  uuid NOT NULL,
    idempotency_key text NOT NULL,
    remind_at       timestamptz NOT NULL,
    channel         text NOT NULL,
    offset_minutes  integer NOT NULL,
    PRIMARY KEY (business_id, appointment_id, idempotency_key)
);
