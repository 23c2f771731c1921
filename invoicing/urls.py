from rest_framework.routers import DefaultRouter

from invoicing.api import InvoiceViewSet

router = DefaultRouter()
router.register("", InvoiceViewSet, basename="invoice")

urlpatterns = router.urls
