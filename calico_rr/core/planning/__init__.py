"""Planning: how many route reflectors, which nodes, in which topology, and the
Calico resources that say so (config, sizing, candidates, topologies, render,
planner), plus the synthetic clusters plans are tried on."""
