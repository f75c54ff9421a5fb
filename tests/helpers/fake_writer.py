"""A stand-in for TensorBoard's SummaryWriter that records what it is given (tests of openlt.engine.tracking)."""


class FakeWriter:
    """Records every `add_scalar(tag, value, global_step)` in `scalars`; `closed` once closed."""

    def __init__(self, log_dir=None):
        self.log_dir, self.scalars, self.closed = log_dir, [], False

    def add_scalar(self, tag, value, global_step):
        self.scalars.append((tag, value, global_step))

    def flush(self):
        pass

    def close(self):
        self.closed = True
