-- The paid booking saga: a service's deposit in the read model, and appointments HELD while the deposit is
-- being paid. A hold takes the slot exactly like a booking (the exclusion constraint covers both), until
-- billing reports the card authorised (-> booked) or the payment fails or the hold lapses (-> released).
ALTER TABLE service
    ADD COLUMN deposit_minor           bigint  NOT NULL DEFAULT 0 CHECK (deposit_minor >= 0),
    ADD COLUMN deposit_currency        text    NOT NULL DEFAULT '',
    ADD COLUMN free_cancellation_hours integer NOT NULL DEFAULT 0 CHECK (free_cancellation_hours >= 0);

ALTER TABLE appointment
    DROP CONSTRAINT appointment_status_check,
    ADD CONSTRAINT appointment_status_check
        CHECK (status IN ('held', 'booked', 'cancelled', 'completed', 'no_show', 'released')),
    -- The deposit terms as they were when the customer booked: later changes to the service do not move them.
    ADD COLUMN deposit_minor           bigint  NOT NULL DEFAULT 0 CHECK (deposit_minor >= 0),
    ADD COLUMN deposit_currency        text    NOT NULL DEFAULT '',
    ADD COLUMN free_cancellation_hours integer NOT NULL DEFAULT 0,
    ADD COLUMN hold_expires_at         timestamptz,
    ADD CONSTRAINT appointment_hold_expiry CHECK ((status = 'held') = (hold_expires_at IS NOT NULL));

ALTER TABLE appointment DROP CONSTRAINT appointment_no_overlap;
ALTER TABLE appointment ADD CONSTRAINT appointment_no_overlap
    EXCLUDE USING gist (business_id WITH =, staff_id WITH =, padded WITH &&) WHERE (status IN ('booked', 'held'));

DROP INDEX appointment_email;
DROP INDEX appointment_phone;
CREATE INDEX appointment_email ON appointment (business_id, customer_email) WHERE status IN ('booked', 'held');
CREATE INDEX appointment_phone ON appointment (business_id, customer_phone) WHERE status IN ('booked', 'held');
CREATE INDEX appointment_hold_expiry ON appointment (hold_expires_at) WHERE status = 'held';
