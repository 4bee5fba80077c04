"""A pretend Django-style project for lesson 02: one ``tasks.py`` per component.

The lesson's app finds them with ``app.autodiscover_tasks([...billing, ...emails])``; the
tasks use ``@shared_task`` (no app import), so the component works with any app.
"""
