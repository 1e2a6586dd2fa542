"""Progress within a long loop (a training epoch): a tqdm bar on a terminal; elsewhere (DVC's
log, CI) a plain line at most every ``interval`` seconds, so logs stay short."""
import sys
import time


class Progress:
    def __init__(self, total, label, interval=15.0, stream=None, enabled=True, unit="batches"):
        self.total, self.label, self.interval, self.unit = total, label, interval, unit
        self.stream = sys.stderr if stream is None else stream
        self.enabled, self.done, self.bar = enabled, 0, None
        self.started = self.reported = time.perf_counter()
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit=unit, leave=False, file=self.stream,
                            dynamic_ncols=True)

    def update(self, count=1):
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.perf_counter()
        if self.enabled and now - self.reported >= self.interval and self.done < self.total:
            self.reported = now
            print(f"{self.label}: {self.done}/{self.total} {self.unit}, {now - self.started:.0f} s",
                  file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
