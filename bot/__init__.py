"""Referral assistant domain logic: no Rasa imports outside bot.nlu."""
