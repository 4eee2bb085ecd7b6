"""``archive serve``: the search page and its JSON API (:mod:`.app`: the application, errors and
the listener; :mod:`.routes`: one function per route; :mod:`.state`: what the routes share; ``web/``:
the page itself)."""
