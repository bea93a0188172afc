"""Results: the files a job's tasks produced, as the template's output rules saved them to the outputs container."""
