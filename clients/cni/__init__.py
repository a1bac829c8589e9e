"""`cnm-cni`: a CNI plugin (spec 1.1.0) whose networks are cnm networks.

A container runtime (containerd, CRI-O, kubelet through them) runs the plugin
binary with CNI_* environment variables and the network configuration on
stdin; the plugin turns each attachment `(network name, CNI_CONTAINERID,
CNI_IFNAME)` into one cnm sandbox on the runtime's namespace (CreateSandbox
with `external_key` = CNI_NETNS) joined to the configured cnm network
(Connect, with the interface named CNI_IFNAME). cnm's IPAM and port mapper do
the rest; the plugin keeps no state of its own.

- `config`: environment and stdin, parsed and validated once
- `result`: the CNI result built from what the controller answered
- `errors`: CNI error results and the spec's codes
- `commands`: ADD, DEL, CHECK, GC, STATUS, VERSION against the controller
- `main`: the executable (and `cnm-cni install`, which puts it in a CNI bin dir)
"""
