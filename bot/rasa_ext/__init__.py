"""Our extensions to the Rasa server, loaded by `python -m bot.rasa_ext run`.

- ``tracker_store``: conversations stored encrypted, and failing closed.
- ``channel``: the gateway's channel, which says when a turn failed.
- ``__main__``: starts `rasa run` with the timeouts and guards set.
"""
