"""AI agents on the OpenAI API: a small framework (``framework``) and the catalogue of the Tutor's
agents (``catalog``), shared by both backends so the same input builds the same prompt."""
