"""Live tutoring as both backends serve it: the prompt contract, the turn events, the HTTP answer
(JSON or SSE) and the ``/ws/tutor/{session_id}`` protocol. Each backend supplies the turn runner
that stores messages and calls the model its own way."""
