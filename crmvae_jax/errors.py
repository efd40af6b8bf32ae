"""The one exception type for errors a user can fix.

Command lines catch `UserError` alone and print its message as one line, with a
non-zero exit; any other exception is a bug and keeps its traceback. A `UserError`
message is one sentence that names the fix: the flag, file or command to use.
"""


class UserError(Exception):
  """A problem with the user's input, files or environment, not with the code."""
