"""The real-kernel oracle: replay ftlab scenarios on Debian 12's Linux 6.1 or 6.12 under QEMU, diff with the model.

Modules, in the order a run uses them:

* :mod:`~ftlab.oracle.kernels` -- the kernels (6.1, 6.12): one table of what differs per kernel;
* :mod:`~ftlab.oracle.install` -- ``ftlab oracle setup``: Debian packages (QEMU, the kernel and its
  headers, busybox, a compiler); the kernel version is discovered, not hard-coded;
* :mod:`~ftlab.oracle.targets` -- the functions user space can reach (and how);
* :mod:`~ftlab.oracle.btf` -- BTF ids of the guest kernel's functions, parsed on the host;
* :mod:`~ftlab.oracle.plan` -- scenario steps -> the agent's steps and the modules they need;
* :mod:`~ftlab.oracle.modgen` -- C of the live-patch, kprobe and direct-call modules; kbuild;
* :mod:`~ftlab.oracle.initramfs` -- busybox + 9p modules + /init (pure-Python cpio);
* :mod:`~ftlab.oracle.qemu` -- one guest under deadlines, followed through its console;
* :mod:`~ftlab.oracle.agent` -- runs *in the guest* (stdlib only): the steps, via system calls;
* :mod:`~ftlab.oracle.runner` -- ``ftlab oracle run``: plan, build, boot (fresh guests as needed);
* :mod:`~ftlab.oracle.observe` -- the shared observables and the model side;
* :mod:`~ftlab.oracle.diff` -- ``ftlab oracle diff``;
* :mod:`~ftlab.oracle.gen` -- ``ftlab oracle gen``: seeded random scenarios;
* :mod:`~ftlab.oracle.groundtruth` -- a maintenance tool: texts, sizes and the catalogue of a real guest.

Nothing here changes the model: a disagreement is a finding to report, not to patch over.
"""
