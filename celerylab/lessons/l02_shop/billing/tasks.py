"""Found by ``app.autodiscover_tasks``; no ``name=``, so the name is module path + function."""
from celery import shared_task


@shared_task
def invoice(order_id):
    return f"invoice for order {order_id}"
