"""calico-rr: route reflectors for Calico BGP, from 5 to 5000+ nodes.

Layers (see docs/ARCHITECTURE.md):

* ``calico_rr.model`` - plain data types shared by every layer;
* ``calico_rr.core`` - the pure core: sizing, selection, topologies, rendering,
  the Calico session graph and metrics.  No I/O anywhere below it;
* ``calico_rr.adapters`` - files, synthetic clusters and (later) Kubernetes, etcd, BIRD;
* ``calico_rr.cli`` - the ``calico-rr`` command.
"""

__version__ = "0.1.0"
