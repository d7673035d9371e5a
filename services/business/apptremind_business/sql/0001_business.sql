-- The business-service's tables: businesses, staff, weekly hours, date overrides, services and the
-- reminder policy. Every tenant table leads with business_id in its primary key and its indexes, and every
-- query the service runs is scoped by it. CHECK and EXCLUDE constraints repeat the service's validation so
-- that no code path (or hand-written SQL) can store what the API would refuse.

CREATE TABLE business (
    business_id   uuid        PRIMARY KEY,
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    slug          text        NOT NULL CHECK (slug ~ '^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$'),
    -- IANA name, evaluated with zoneinfo by every consumer.
    time_zone     text        NOT NULL,
    locale        text        NOT NULL,
    currency      text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    owner_user_id uuid        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Public booking pages resolve a business by its slug: the one lookup that cannot be tenant-scoped.
CREATE UNIQUE INDEX business_slug ON business (slug);

CREATE TABLE staff (
    business_id uuid        NOT NULL REFERENCES business (business_id),
    staff_id    uuid        NOT NULL,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email       text,
    -- Set when the staff member has an account in auth-service.
    user_id     uuid,
    active      boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (business_id, staff_id)
);
-- One staff record per account and business.
CREATE UNIQUE INDEX staff_user ON staff (business_id, user_id) WHERE user_id IS NOT NULL;

-- A staff member's weekly wall-clock schedule in the business's zone, in minutes after midnight.
CREATE TABLE working_hours (
    business_id  uuid     NOT NULL,
    staff_id     uuid     NOT NULL,
    kind         text     NOT NULL CHECK (kind IN ('hours', 'break')),
    -- ISO weekday: 1 = Monday .. 7 = Sunday.
    weekday      smallint NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    start_minute smallint NOT NULL CHECK (start_minute BETWEEN 0 AND 1439),
    end_minute   smallint NOT NULL CHECK (end_minute BETWEEN 1 AND 1440),
    PRIMARY KEY (business_id, staff_id, kind, weekday, start_minute),
    FOREIGN KEY (business_id, staff_id) REFERENCES staff (business_id, staff_id) ON DELETE CASCADE,
    CHECK (start_minute < end_minute),
    CONSTRAINT working_hours_no_overlap EXCLUDE USING gist (
        business_id WITH =, staff_id WITH =, kind WITH =, weekday WITH =,
        int4range(start_minute, end_minute) WITH &&
    )
);

CREATE TABLE date_override (
    business_id uuid        NOT NULL REFERENCES business (business_id),
    override_id uuid        NOT NULL,
    -- NULL for a business-wide holiday.
    staff_id    uuid,
    kind        text        NOT NULL CHECK (kind IN ('time_off', 'holiday', 'extra_hours')),
    period      tstzrange   NOT NULL
        CHECK (NOT isempty(period) AND NOT lower_inf(period) AND NOT upper_inf(period)),
    reason      text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (business_id, override_id),
    FOREIGN KEY (business_id, staff_id) REFERENCES staff (business_id, staff_id),
    CHECK ((kind = 'holiday') = (staff_id IS NULL))
);
-- ListDateOverrides filtered by staff, in id order.
CREATE INDEX date_override_by_staff ON date_override (business_id, staff_id, override_id);
-- Availability reads the overrides that intersect a date range.
CREATE INDEX date_override_period ON date_override USING gist (business_id, period);

CREATE TABLE service (
    business_id           uuid        NOT NULL REFERENCES business (business_id),
    service_id            uuid        NOT NULL,
    name                  text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    duration_minutes      integer     NOT NULL CHECK (duration_minutes BETWEEN 1 AND 1440),
    price_minor           bigint      NOT NULL CHECK (price_minor >= 0),
    -- The business's currency when the price was last set.
    currency              text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    buffer_before_minutes integer     NOT NULL CHECK (buffer_before_minutes BETWEEN 0 AND 240),
    buffer_after_minutes  integer     NOT NULL CHECK (buffer_after_minutes BETWEEN 0 AND 240),
    active                boolean     NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (business_id, service_id)
);
-- ListServices without include_inactive.
CREATE INDEX service_active ON service (business_id, service_id) WHERE active;

-- Which staff members offer a service.
CREATE TABLE service_staff (
    business_id uuid NOT NULL,
    service_id  uuid NOT NULL,
    staff_id    uuid NOT NULL,
    PRIMARY KEY (business_id, service_id, staff_id),
    FOREIGN KEY (business_id, service_id) REFERENCES service (business_id, service_id) ON DELETE CASCADE,
    FOREIGN KEY (business_id, staff_id) REFERENCES staff (business_id, staff_id)
);
CREATE INDEX service_staff_by_staff ON service_staff (business_id, staff_id);

-- One per business, created with the business by the signup saga.
CREATE TABLE reminder_policy (
    business_id       uuid        PRIMARY KEY REFERENCES business (business_id),
    -- Minutes before the appointment, largest first.
    offsets_minutes   integer[]   NOT NULL,
    channels          text[]      NOT NULL CHECK (channels <@ ARRAY['email', 'sms'] AND cardinality(channels) > 0),
    -- Minutes after midnight in the business's zone; both NULL: no quiet hours. May wrap midnight.
    quiet_hours_start smallint    CHECK (quiet_hours_start BETWEEN 0 AND 1439),
    quiet_hours_end   smallint    CHECK (quiet_hours_end BETWEEN 0 AND 1439),
    templates         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((quiet_hours_start IS NULL) = (quiet_hours_end IS NULL)),
    CHECK (quiet_hours_start IS NULL OR quiet_hours_start <> quiet_hours_end)
);
