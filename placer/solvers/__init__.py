"""Placement algorithms, all with the call shape of :mod:`placer.solvers.base`."""
