"""One-line errors for problems a user can fix, and the entry point every stage runs through."""
import signal
import sys


class PipelineError(Exception):
    """A problem with the input, the parameters or the machine that the user can fix.

    Reported as one line on stderr, without a traceback: the message names the file, key or
    document at fault and says what to do.
    """


def run_stage(main, argv=None):
    """Run ``main(argv)``; turn a PipelineError into ``error: ...`` and exit status 2.

    SIGINT and SIGTERM raise KeyboardInterrupt, so that either unwinds through the atomic
    writers and removes their temporary files, and exit with the shell's status (130, 143).
    """
    _received.clear()
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        main(sys.argv[1:] if argv is None else argv)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except BaseException:
        # A signal that lands while numba's compiled code runs surfaces as a SystemError
        # ("returned a result with an exception set"), and inside autograd's backward as a
        # chain of them: what was received, not the exception's type, says it was a signal.
        if not _received:
            raise
        print(f"interrupted by {_received[0]}: the output being written was discarded; run "
              "`dvc repro` to start again", file=sys.stderr)
        sys.exit(128 + signal.Signals[_received[0]])


_received = []


def _interrupt(signum, frame):
    _received.append(signal.Signals(signum).name)
    raise KeyboardInterrupt(signal.Signals(signum).name)
