"""`mnp local` user verbs (apply, delete, get, exec, logs, kubeconfig, status, wait).

Pure parts (manifest ordering, kind names, tables, the convergence decision) are separate from the
shells that call the API server through `api.ClusterApi`, so they are tested without a cluster.
"""
