"""Exact placement models: ExFlow's and the joint model (:mod:`.models`), MoETuner's two ILPs
(:mod:`.moetuner`), the MILP terms (:mod:`.formulation`), its backends (:mod:`.milp`) and the
layer-chain programme (:mod:`.chain`). Backends (ortools, highspy, pulp) are imported only when
a model is solved."""
