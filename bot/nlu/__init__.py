"""Components plugged into Rasa's NLU pipeline: the only part of bot/ that imports Rasa."""
