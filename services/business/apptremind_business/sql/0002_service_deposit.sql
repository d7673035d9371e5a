-- The paid booking saga: a deposit per service (part of its price) and how early a customer may cancel
-- and get it back.
ALTER TABLE service
    ADD COLUMN deposit_minor bigint NOT NULL DEFAULT 0 CHECK (deposit_minor >= 0 AND deposit_minor <= price_minor),
    ADD COLUMN free_cancellation_hours integer NOT NULL DEFAULT 0
        CHECK (free_cancellation_hours BETWEEN 0 AND 720);
