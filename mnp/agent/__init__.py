"""The node agent: enforce this node's PodNetworkRulesets in each pod's network namespace."""
