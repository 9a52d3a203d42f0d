"""The bottom layer: what every other layer shares and that costs nothing to import.

Standard library only: the error hierarchy (:mod:`.errors`), atomic file helpers
(:mod:`.fsutil`), the one list of formats (:mod:`.formats`), text helpers (:mod:`.text`),
path confinement (:mod:`.paths`) and the one table renderer (:mod:`.table`).
"""
