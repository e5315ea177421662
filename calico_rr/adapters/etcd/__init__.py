"""Calico's etcdv3 datastore: an etcd v3 client over the JSON gateway (``client``,
with its ``values``, ``errors`` and ``watch`` streams), settings from Calico's
environment variables (``config``), leader election on an etcd lease (``leader``)
and what ``calico-rr doctor`` reads from etcd (``inventory``).  The Calico key
layout and document conversions are pure and live in ``calico_rr.core.formats.etcd``.
See docs/ETCD.md."""
