"""The AI Tutor as functions on the runtime: ``auth``, ``folders``, ``sessions``, ``gc``.
Importing this package registers them all."""

import backends.new.functions.auth
import backends.new.functions.folders
import backends.new.functions.gc
import backends.new.functions.sessions  # noqa: F401
