"""Generic wrappers: any optimizer in one line, no adapter code written.

``torch:pkg.mod.Class`` (a ``torch.optim.Optimizer``), ``optax:pkg.mod.factory`` (a function
returning an ``optax.GradientTransformation``), ``keras-<backend>:pkg.mod.Class`` (a
``keras.optimizers.Optimizer``; ``keras:`` for every installed backend) and
``numpy:pkg.mod.Class`` (the numpy optimizer protocol, :mod:`adapters.generic.numpy_wrapper`),
each with optional ``?key=value&...`` constructor overrides and ``?profile=NAME``.

Capabilities are discovered from the constructor's signature
(:mod:`adapters.generic.capabilities`); the spec grammar is :mod:`adapters.generic.spec`;
:func:`adapters.load_adapter` resolves the specs (:mod:`adapters.generic.loader`). Importing this
package imports no framework.
"""
