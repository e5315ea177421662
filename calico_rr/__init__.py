"""calico-rr: route reflectors for Calico BGP, from 5 to 5000+ nodes.

Layers (see docs/ARCHITECTURE.md):

* ``calico_rr.model`` - plain data types shared by every layer;
* ``calico_rr.core`` - the pure core, one folder per subdomain (planning, bgp,
  operator, doctor, formats, report, lab).  No I/O anywhere below it;
* ``calico_rr.adapters`` - the I/O: files, the Kubernetes API, etcd, the operator's
  controller over either, the BGP lab, plots and reports;
* ``calico_rr.sandbox`` - local parts ``demo`` and ``lab`` start (kube-apiserver,
  etcd, the lab's BIRD tools);
* ``calico_rr.cli`` - the ``calico-rr`` command.

``calico_rr.testing`` is test support, never imported by the rest of the package.
"""

__version__ = "0.1.0"
