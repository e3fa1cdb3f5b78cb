"""What the training pipeline refuses or fails with. Each message is written for the person who
ran it: it names the field or file and says what to do instead, so the command line, the worker
and the web tab pass it on as it is (`USER_ERRORS`)."""
from __future__ import annotations


class DataError(ValueError):
    """The file cannot be used for training; the message says why and what is allowed."""


class OutputError(ValueError):
    """--out (or its run folder) cannot be used; the message names the field and the fix."""


class SaveError(OSError):
    """The model could not be written; nothing at --out changed."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite, or the eval loss rose far above its start; nothing
    was published."""

    def __init__(self, step: int, loss: float, during: str = "training", start: float | None = None) -> None:
        what = (f"the {during} loss was {loss}" if start is None else
                f"the eval loss rose from {start:.3f} before training to {loss:.3f}")
        super().__init__(f"training diverged: {what} at step {step}; nothing was saved as a model. "
                         "Lower the learning rate (--lr) and start again. 训练发散：请降低学习率后重试。")
        self.step, self.loss = step, loss


USER_ERRORS: tuple[type[BaseException], ...] = (DataError, OutputError, SaveError, TrainingDiverged)
