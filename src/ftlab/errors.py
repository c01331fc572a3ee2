"""Every exception ftlab raises, in one place.

Kernel-level failures are *not* exceptions: a modelled kernel function returns a negative errno
(see :mod:`ftlab.model.errno`) and a kernel WARN is an event recorded on the kernel state. The
exceptions below are for the two things that are not kernel behaviour:

* :class:`InputError` -- a user's input is wrong (catalogue file, function name, scenario, CLI
  argument). Raised by loaders and lookups; the CLI prints ``str(err)`` as one line and exits 2.
* :class:`ModelError` -- the model itself was driven into something the kernel cannot do (a
  mutex taken twice by its holder, released by a non-holder). It means a bug in a caller of the
  model, and is raised loudly rather than recorded.
* :class:`OracleError` -- the real-kernel oracle (:mod:`ftlab.oracle`) cannot do its work: a
  package cannot be installed, a module does not build, a guest does not boot or hangs. The CLI
  prints it as one line and exits 2.
"""

from __future__ import annotations


class FtlabError(Exception):
    """Base class of ftlab's own exceptions."""


class InputError(FtlabError):
    """Bad user input. ``where`` names the place (``FILE:LINE``, an argument); ``str()`` is one line."""

    def __init__(self, message: str, where: str | None = None) -> None:
        self.message = message.replace("\n", " ")
        self.where = where
        super().__init__(f"{where}: {self.message}" if where else self.message)


class ModelError(FtlabError):
    """The model was driven into a state the kernel forbids (lock misuse, impossible call)."""


class KernelOops(FtlabError):
    """The modelled kernel hit a BUG / Oops (for instance a NULL pointer dereference).

    The task that ran the path is dead: whatever locks it held stay held, as after a real oops;
    the kernel's event log has a ``BUG`` entry. Raised out of the model so that no caller
    continues as if the call had returned; shells report it as the step's result ``Oops``.
    """


class OracleError(FtlabError):
    """The real-kernel oracle cannot run: setup, module build or guest failure (one-line message)."""
