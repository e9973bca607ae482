"""Storage backends behind one protocol (:class:`jobq.store.base.Store`)."""
