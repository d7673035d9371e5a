-- The customer's confirmation (a reply "C" to a reminder, or a member for them).
ALTER TABLE appointment ADD COLUMN confirmed_at timestamptz;
