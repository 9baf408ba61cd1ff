"""The local cluster's control loops between the API server and the kubelets: the scheduler and the
Deployment, ReplicaSet and DaemonSet controllers, so that the deploy/ manifests run unchanged.

Each controller is a pure reconcile function (objects → actions); `runner` is the one I/O shell.
"""
