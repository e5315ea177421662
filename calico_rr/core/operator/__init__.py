"""The operator's decisions: its settings (the RouteReflectorConfig spec), one
level-triggered reconcile step, the safety gate every write passes, and the Typha
rule it keeps."""
