"""Models of the marketplace app, one module per area; this package re-exports them."""

from marketplace.models.campaigns import Campaign, CampaignFunding
from marketplace.models.disputes import Dispute
from marketplace.models.orders import Anomaly, Order, OrderStatusChange
from marketplace.models.refunds import Refund
from marketplace.models.restaurants import Customer, Restaurant, Rider
from marketplace.models.treasury import Topup

__all__ = [
    "Anomaly",
    "Campaign",
    "CampaignFunding",
    "Customer",
    "Dispute",
    "Order",
    "OrderStatusChange",
    "Refund",
    "Restaurant",
    "Rider",
    "Topup",
]
