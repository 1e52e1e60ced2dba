"""The AI Tutor as functions on the runtime: ``auth``, ``folders``, ``sessions``, ``gc``,
``tutor``, ``whiteboard``, ``quizzes``, ``analytics``, ``cache``.
Importing this package registers them all."""

import backends.new.functions.agents
import backends.new.functions.analytics
import backends.new.functions.auth
import backends.new.functions.cache
import backends.new.functions.documents
import backends.new.functions.folders
import backends.new.functions.gc
import backends.new.functions.jobs
import backends.new.functions.quizzes
import backends.new.functions.sessions
import backends.new.functions.tutor
import backends.new.functions.whiteboard  # noqa: F401
