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

    SIGTERM is turned into KeyboardInterrupt so that, like Ctrl-C, it unwinds through the
    atomic writers and removes their temporary files.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        main(sys.argv[1:] if argv is None else argv)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, SystemError) as exc:
        # A signal that lands while numba's compiled code runs surfaces as a SystemError
        # ("returned a result with an exception set") whose context is the KeyboardInterrupt.
        if isinstance(exc, SystemError):
            cause = exc.__cause__ or exc.__context__
            if not isinstance(cause, KeyboardInterrupt):
                raise
            exc = cause
        signame = exc.args[0] if exc.args else "SIGINT"
        print(f"interrupted by {signame}: the output being written was discarded; run "
              "`dvc repro` to start again", file=sys.stderr)
        sys.exit(128 + signal.Signals[signame])  # the shell's convention: 130, 143


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)
