"""Exact placement models (ExFlow, MoETuner, joint) and the layer-descent warm start.

Importing this package registers the solvers ``exflow``, ``joint``, ``moetuner`` and
``layer_descent``; the backends (ortools, highspy, pulp) are imported only when a model is solved.
"""

from placer.solvers.exact import models  # noqa: F401  (registers the solvers)
