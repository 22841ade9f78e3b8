"""One error type whose message is a single line that says what is wrong and how to fix it."""


class StackError(RuntimeError):
    """A stack operation failed for a reason the user can fix; the message names the fix."""
