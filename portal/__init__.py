"""The Batch portal: Django project and web app."""
