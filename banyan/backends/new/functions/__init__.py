"""The AI Tutor as functions on the runtime: ``auth``, ``folders``, ``sessions``, ``gc``,
``tutor``, ``whiteboard``, ``quizzes``, ``analytics``, ``cache``.
Importing this package registers them all."""

import banyan.backends.new.functions.agents
import banyan.backends.new.functions.analytics
import banyan.backends.new.functions.auth
import banyan.backends.new.functions.cache
import banyan.backends.new.functions.documents
import banyan.backends.new.functions.folders
import banyan.backends.new.functions.gc
import banyan.backends.new.functions.jobs
import banyan.backends.new.functions.quizzes
import banyan.backends.new.functions.sessions
import banyan.backends.new.functions.tutor
import banyan.backends.new.functions.whiteboard  # noqa: F401
