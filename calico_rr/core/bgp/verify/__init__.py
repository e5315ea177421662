"""The verifier: does every node get a route to every other node's prefix?

It reads the session graph calico-node would build from the rendered resources
(``core.bgp.sessions.build_session_graph``), never the planner's intent, and applies
BIRD's route-reflection rules to it (domain.md sections 2-3):

* :mod:`.rules` - the BGP rules (export, receive, pruning) and the result protocol;
* :mod:`.exact` - the per-node reference engine (hundreds of nodes, cross-checks);
* :mod:`.fast` - the per-class engine (thousands of nodes, failure sweeps batched
  into one propagation), and :mod:`.fast_result`, how its class-level result reads;
* :mod:`.report` - :func:`verify`, which runs an engine on the graph and on its
  failure scenarios and returns a :class:`VerifyReport`.
"""
