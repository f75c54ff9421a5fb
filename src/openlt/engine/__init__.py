"""Training, evaluation and prediction over run directories.

The ground floor (imports no other engine module but each other): :mod:`~openlt.engine.run` (a run directory
and every path in it), :mod:`~openlt.engine.checkpoint`, :mod:`~openlt.engine.distributed` (torchrun, with
:mod:`~openlt.engine.dist_env` and :mod:`~openlt.engine.dist_signals`),
:mod:`~openlt.engine.precision` (autocast) and :mod:`~openlt.engine.runtime` (device, loaders, inference over
a loader, loading a run's model). On top of it: :mod:`~openlt.engine.train` (the training recipe),
:mod:`~openlt.engine.init_from` (starting from a stage-1 run), :mod:`~openlt.engine.features` (the feature
cache), :mod:`~openlt.engine.decouple` (decoupled stage 2 as a run), :mod:`~openlt.engine.tracking` (the
per-epoch log), :mod:`~openlt.engine.evaluate` (metrics and the open-set decision of a run),
:mod:`~openlt.engine.predict` (image files) and :mod:`~openlt.engine.bench` (methods x seeds).
"""
