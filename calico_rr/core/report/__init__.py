"""What the planner's figures, plots and reports show: the plan's summary, the
topologies side by side across sizes (series), and the group-level diagram."""
