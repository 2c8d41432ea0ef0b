"""The services' cycle collector settings (shared/bootstrap.quiet_collector)."""

from __future__ import annotations

import gc

from shared.bootstrap import YOUNG_THRESHOLD, quiet_collector


def test_what_exists_at_start_is_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    try:
        quiet_collector()
        assert gc.get_freeze_count() > 0  # the start-up objects, out of the generations
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
        assert gc.isenabled()  # cycles are still collected, only less often
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
