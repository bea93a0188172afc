"""Jobs and tasks: lists, detail pages, actions on them (terminate, delete, retry failed), and failure triage."""
