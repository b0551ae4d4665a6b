"""How many flagged-frame overlays each scoring batch may draw, so that the batches of a run together draw at most
the report's limit.

Batches run in parallel and learn which frames are flagged only as they score them, so the flow cannot say in
advance which frames' overlays the report will show (the highest scores of the whole shift). It shares the limit
out instead: a batch is given at most what is left after the allowances of the batches still running, and what a
finished batch did not use is given back. Drawing in the batch saves reading the frame and heatmap back; the
limit keeps a bad night (most frames flagged) from paying for thousands of pictures nobody opens.
"""

from __future__ import annotations


class OverlayAllowance:
    """The part of ``limit`` still free, and what each running batch (by a key of the caller's) was given."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self._given: dict[str, int] = {}

    def give(self, key: str, wanted: int) -> int:
        """Allow the batch ``key`` up to ``wanted`` overlays, as far as the limit goes; returns how many."""
        allowed = max(0, min(wanted, self.left))
        self.left -= allowed
        self._given[key] = allowed
        return allowed

    def settle(self, key: str, used: int) -> None:
        """The batch ``key`` is over and drew ``used`` overlays (0 if it failed): give back the rest."""
        given = self._given.pop(key, 0)
        self.left += max(0, given - used)
