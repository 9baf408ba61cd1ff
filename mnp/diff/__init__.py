"""`mnp diff`: the PodNetworkRulesets that applying policy files would add, change or remove."""
