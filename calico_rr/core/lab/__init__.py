"""The BGP lab's pure parts: BIRD configuration rendered the way confd would
(bird, the second opinion beside Calico's confd) and what the lab compares with
BIRD's tables (prediction)."""
