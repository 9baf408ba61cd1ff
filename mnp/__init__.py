"""mnp: MultiNetworkPolicy for Multus secondary interfaces, enforced with nftables in each pod's netns."""

__version__ = "0.1.0"
