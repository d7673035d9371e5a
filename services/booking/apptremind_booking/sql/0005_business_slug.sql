-- GetAvailability and BookAppointment may name the business by its slug (the edge no longer asks
-- business-service for it). Not unique here: events of two businesses travel on different partitions, so
-- when one gives up a slug and another takes it, the read model may hold both for a moment; business-service
-- keeps slugs unique.
CREATE INDEX business_slug ON business (slug);
