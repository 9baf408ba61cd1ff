"""nftables for one pod: render a PodNetworkRuleset into one table (pure) and apply it in the pod netns.

render.py is the entry point for text, apply.py for the kernel; see render.py for the table's shape.
"""
