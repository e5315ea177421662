"""Input limits: the sizes past which calico-rr refuses input instead of choking on it.

Every number here is far beyond what a real cluster produces, and low enough that
a hostile or broken input (a 30,000-level nesting, a YAML alias bomb, an endless
stdin, a selector of 5,000 ``(``) ends in one :class:`~calico_rr.errors.InputError`
line instead of a segfault, a RecursionError or an exhausted memory (issue 14).
The readers that enforce them: :mod:`calico_rr.adapters.nodes_io` (files and stdin)
and :mod:`calico_rr.core.bgp.selector` (selectors).
"""

from __future__ import annotations

from typing import Final

#: Bytes read from one input file or from standard input; one more is an error
#: (reading stops there, so an endless stdin does not fill the memory).  A real node
#: in ``kubectl get nodes -o yaml`` is about 12 KB (kubelet reports up to 50 images,
#: plus managedFields) and about 20 KB in kubectl's indented JSON: a 50,000-node
#: dump is ~0.6 GB of YAML or ~1.0 GB of JSON, both within 1 GiB.  The synthetic
#: nodes of calico_rr.core.planning.synthetic are ~650 bytes of YAML each (50,000: 32 MB).
#: PyYAML needs about 0.35 s and 0.4 GB of memory per 1,000 real nodes, so a larger
#: input would take minutes and tens of GB before anything is planned.
MAX_INPUT_BYTES: Final = 1024**3

#: Most nodes one plan takes (synthetic or read from a file).  Twice the 50,000
#: nodes the planner is built and benchmarked for, and far past Kubernetes' own
#: tested limit (5000 nodes per cluster); it keeps ``--nodes 10000000`` from running
#: the machine out of memory (3.2 GB) before it says anything.
MAX_NODES: Final = 100_000

#: Collections nested in collections (a mapping in a list in a mapping is 3).
#: Kubernetes objects stay below 20 levels (a Node's managedFields, the deepest
#: part, reaches ~12).  Beyond this, libyaml's composer recursed until it segfaulted
#: (30,000 levels) and json.loads raised RecursionError; JSON/YAML writers and every
#: recursive walk of the data stay far from Python's recursion limit at 100.
MAX_NESTING_DEPTH: Final = 100

#: Nodes that YAML aliases (``*name``) may add to one input, all documents together,
#: when every alias is expanded.  kubectl never writes anchors or aliases; a hand-
#: written file may share a few blocks.  An alias bomb ("billion laughs": anchors
#: made of aliases of anchors) loads cheaply, because PyYAML shares the objects, but
#: anything that walks or dumps it (``render --include-nodes``) meets the expanded
#: size: 10^9 nodes.  100,000 extra nodes is about the size of a 1,000-node dump.
MAX_ALIAS_EXPANSION: Final = 100_000

#: Characters of one YAML or JSON number.  An int64 has 19 digits and a float64 ~25
#: characters; Python converts a long digit string in quadratic time (a 400 KB
#: sexagesimal YAML integer ``1:0:0:...`` took 2.4 s, 4 MB would take minutes) and
#: refuses more than 4,300 digits with a message about sys.set_int_max_str_digits.
MAX_NUMBER_CHARS: Final = 100

#: Characters of one selector.  The longest selector calico-rr writes is a
#: peerSelector naming every RR slot: ~8 KB for 1,000 RRs (the most
#: core.planning.config allows).  Calico's own are a few dozen characters.
MAX_SELECTOR_CHARS: Final = 16 * 1024

#: ``(`` and ``!`` nested in a selector (``!(a || !(b))`` is 3).  Real selectors
#: nest two or three levels; the parser is recursive descent (4 Python frames per
#: parenthesis) and so is evaluation, which must stay far below Python's recursion
#: limit of 1,000 frames.
MAX_SELECTOR_NESTING: Final = 64

#: Depth of a selector's syntax tree (Not/And/Or inside each other), checked for
#: every :class:`~calico_rr.core.bgp.selector.Selector`, parsed or built in code.  A
#: parsed selector within MAX_SELECTOR_NESTING reaches at most 2 * 64 + 3 levels (a
#: parenthesis can open an Or holding an And); the margin covers the few levels
#: core.operator.reconcile wraps around a parsed selector (its companion selectors).
MAX_SELECTOR_TREE_DEPTH: Final = 2 * MAX_SELECTOR_NESTING + 8
