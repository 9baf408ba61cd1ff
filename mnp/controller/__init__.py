"""The cluster controller: every MultiNetworkPolicy compiled into PodNetworkRulesets, and policy status."""
