"""`mnp demo`: the real product on a local cluster; a sample app's connectivity before and after a policy."""
