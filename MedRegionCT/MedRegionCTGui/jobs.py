"""Background work the GUI thread polls: progress, results and every MRML change happen on the GUI thread."""

from __future__ import annotations

import qt


class BackgroundJob:
    """``work(progress, cancel)`` in MedRegionCTLib's ThreadJob, polled by a QTimer; ``onDone(result, error)``
    runs on the GUI thread when it ends. ``cancel`` is the controller job's token, so Cancel reaches it."""

    def __init__(self, work, onProgress, onDone, cancel=None, interval_ms=100):
        from MedRegionCTLib.slicer_mrml import ThreadJob

        self.job = ThreadJob(work)
        if cancel is not None:
            self.job.cancel = cancel
        self._onProgress, self._onDone = onProgress, onDone
        self._timer = qt.QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.connect("timeout()", self._poll)

    def start(self):
        self.job.start()
        self._timer.start()
        return self

    def running(self):
        return self._timer.isActive()

    def stop(self):
        """Stop polling (the module is being destroyed); the worker ends at its next cancel check."""
        self.job.cancel.set()
        self._timer.stop()

    def _poll(self):
        fraction, message, done = self.job.poll()
        self._onProgress(fraction, message)
        if done:
            self._timer.stop()
            self._onDone(self.job.result, self.job.error)
