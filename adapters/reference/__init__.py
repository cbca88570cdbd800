"""The reference as an implementation: the fast numpy executor of the specification and the
adapter that runs it.

:mod:`~adapters.reference.oracle` computes :func:`adamw_ref.step` on numpy arrays in a chosen
dtype (the suite's expected trajectories come from it); :mod:`~adapters.reference.adapter` puts it
behind the protocol, optionally with a planted bug (a knob changed behind an honest profile).
"""
