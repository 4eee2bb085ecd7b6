"""The embedding space: the open_clip model (:mod:`.encoder`), its towers exported for fast starts
(:mod:`.image_tower`: TorchScript; :mod:`.text_tower`: numpy), and the background prompts every
text query is weighed against (:mod:`.background`). torch and open_clip are imported lazily."""
