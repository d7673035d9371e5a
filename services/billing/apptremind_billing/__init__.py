"""ApptRemind billing-service: plans, Stripe subscriptions, entitlements and usage metering."""
