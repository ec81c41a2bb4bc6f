"""A rich progress bar for Keras training (one bar over all batches of all epochs, with loss and accuracy), on stderr."""

from __future__ import annotations


def rich_progress_callback(epochs: int, steps_per_epoch: int, console=None):
    import keras
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)  # progress never mixes with --json on stdout

    class RichProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.progress = Progress(TextColumn("[bold]train[/] epoch {task.fields[epoch]}/" + str(epochs)),
                                     BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                                     TimeElapsedColumn(), console=console, transient=False)
            self.progress.start()
            self.task = self.progress.add_task("train", total=epochs * steps_per_epoch, epoch=1, stats="")

        def on_epoch_begin(self, epoch, logs=None):
            self.progress.update(self.task, epoch=epoch + 1)

        def on_train_batch_end(self, batch, logs=None):
            logs = logs or {}
            stats = f"loss {logs.get('loss', float('nan')):.4f}" + (
                f" acc {logs['accuracy']:.3f}" if "accuracy" in logs else "")  # a detector has no accuracy
            self.progress.update(self.task, advance=1, stats=stats)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if "val_accuracy" in logs:
                self.progress.console.print(f"epoch {epoch + 1}: loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} "
                                          f"val_loss {logs['val_loss']:.4f} val_acc {logs['val_accuracy']:.4f}")
            elif "val_loss" in logs:  # a detector: losses only (mAP is `edgecnn eval`'s)
                self.progress.console.print(f"epoch {epoch + 1}: loss {logs['loss']:.4f} "
                                          f"val_loss {logs['val_loss']:.4f}")

        def on_train_end(self, logs=None):
            self.progress.stop()

    return RichProgress()
