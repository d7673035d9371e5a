"""ApptRemind notification-service.

Templates, the delivery log and opt-outs; e-mail over SMTP and SMS over a Twilio-shaped API.
"""
