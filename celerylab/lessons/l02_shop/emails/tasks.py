"""Found by ``app.autodiscover_tasks``; no ``name=``, so the name is module path + function."""
from celery import shared_task


@shared_task
def send_welcome(user_id):
    return f"welcome mail to user {user_id}"
