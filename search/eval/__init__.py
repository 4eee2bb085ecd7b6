"""``archive eval``: the truth file a person wrote (:mod:`.truth`), the measures (:mod:`.metrics`:
intervals, IoU, AP, a swept cut) and the archive's answers measured against it (:mod:`.evaluate`),
which also calibrates a label's threshold."""
