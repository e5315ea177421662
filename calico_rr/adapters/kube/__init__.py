"""Kubernetes API access: a thin HTTP client (``client``) with its paths (``api``),
errors (``errors``), configuration (``kubeconfig``, with ``credentials`` and ``tls``)
and watch streams (``watch``), and informers (``informer``)."""
