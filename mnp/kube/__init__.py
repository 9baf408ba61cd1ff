"""The only package that talks to a Kubernetes API server (kr8s underneath).

client: typed-by-resource CRUD with retries and mnp errors; discovery: apiVersion/kind and CLI names
to resources; watch: list+watch informer with relist on 410 Gone; lease: leader election and node
heartbeats; events: core/v1 Events with aggregation of repeats.
"""
