"""``calico-rr doctor``, pure: what a cluster holds read into an inventory
(inventory), and the checks of the talk's scale advice run on it (checks)."""
