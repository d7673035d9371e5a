-- A per-business counter of everything availability is computed from. Every write that can change a
-- business's slots (an appointment booked, moved or leaving the booked status; any read-model update) bumps
-- it in the same transaction, so an availability answer cached under generation N is current exactly while
-- the committed generation is still N (docs/adr/0010-availability-cache.md).
CREATE TABLE availability_generation (
    business_id uuid PRIMARY KEY,
    generation  bigint NOT NULL
);
