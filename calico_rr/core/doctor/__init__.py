"""``calico-rr doctor``, pure: what a cluster holds read into an inventory
(inventory), and the checks of the talk's scale advice run on it (checks: the entry
point; findings: what a check returns; peering and pools_typha: the checks)."""
