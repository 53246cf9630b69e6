"""The referral service: the web chat page and the gateway to Rasa."""
