"""Pydantic models of every ShopPulse event (contract version 1, with additive version 2).

Wire format: one UTF-8 JSON object per Kafka message, keyed by ``session_id``.
Money is integer minor units of an ISO 4217 currency (JPY has no minor unit: 1 = ¥1).
``event_ts`` is UTC epoch milliseconds.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

CONTRACT_VERSION = "1.1"
"""Version of this document: schema_version 1 events, plus the additive schema_version 2."""

SCHEMA_VERSIONS = (1, 2)
"""schema_version values a consumer accepts. 2 = 1 + optional envelope field ``experiment_variant``."""

CURRENCY_EXPONENTS: dict[str, int] = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0}
"""Supported ISO 4217 currencies and their minor-unit exponents."""

MIN_EVENT_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_FUTURE_SKEW_MS = 3_600_000  # an event may be stamped at most 1 h after the broker received it
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
COUNTRY_PATTERN = r"^[A-Z]{2}$"
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class EventType(StrEnum):
    PAGE_VIEW = "page_view"
    PRODUCT_VIEW = "product_view"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    CHECKOUT_STARTED = "checkout_started"
    ORDER_PLACED = "order_placed"
    PAYMENT = "payment"
    ORDER_CANCELLED = "order_cancelled"
    REFUND = "refund"


Device = Literal["desktop", "mobile", "tablet"]
Channel = Literal["direct", "organic_search", "paid_search", "social", "email", "referral", "affiliate"]
PageType = Literal["home", "category", "search", "product", "cart", "checkout", "account", "other"]
PaymentMethod = Literal["card", "paypal", "apple_pay", "google_pay", "bank_transfer", "klarna"]
PaymentStatus = Literal["captured", "failed"]
Currency = Literal["USD", "EUR", "GBP", "JPY"]

Id = Annotated[str, Field(pattern=ID_PATTERN, examples=["s_7f3a9c21"])]
Money = Annotated[int, Field(ge=0, description="Integer minor units of `currency`.")]
Quantity = Annotated[int, Field(ge=1, le=1000)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class OrderLine(_Strict):
    """A line of an order (also carried by cancellations)."""

    product_id: Id
    category: str = Field(min_length=1, max_length=64)
    quantity: Quantity
    unit_price: Money
    discount: Money = Field(description="Order discount allocated to this line.")


class RefundLine(_Strict):
    """A refunded line: `amount` is the merchandise value refunded (after the line's discount)."""

    product_id: Id
    category: str = Field(min_length=1, max_length=64)
    quantity: Quantity
    amount: Money


class Envelope(_Strict):
    """Fields every event carries."""

    event_id: str = Field(pattern=UUID_PATTERN, description="Producer-assigned UUID; the deduplication key.")
    schema_version: Literal[1, 2]
    event_ts: int = Field(ge=MIN_EVENT_TS_MS, description="When it happened: UTC epoch milliseconds.")
    user_id: Id
    session_id: Id
    country: str = Field(pattern=COUNTRY_PATTERN, description="ISO 3166-1 alpha-2.")
    device: Device
    channel: Channel
    experiment_variant: str | None = Field(
        default=None, max_length=64, description="schema_version 2 only: A/B test assignment, e.g. 'checkout_v2:B'."
    )

    @model_validator(mode="after")
    def _v2_field_needs_v2(self) -> Envelope:
        if self.experiment_variant is not None and self.schema_version < 2:
            raise ValueError("experiment_variant requires schema_version 2")
        return self


class PageView(Envelope):
    event_type: Literal[EventType.PAGE_VIEW]
    page_type: PageType
    url_path: str = Field(min_length=1, max_length=512)


class ProductView(Envelope):
    event_type: Literal[EventType.PRODUCT_VIEW]
    product_id: Id
    category: str = Field(min_length=1, max_length=64)
    price: Money
    currency: Currency


class CartChange(Envelope):
    cart_id: Id
    product_id: Id
    category: str = Field(min_length=1, max_length=64)
    quantity: Quantity
    unit_price: Money
    currency: Currency


class AddToCart(CartChange):
    event_type: Literal[EventType.ADD_TO_CART]


class RemoveFromCart(CartChange):
    event_type: Literal[EventType.REMOVE_FROM_CART]


class CheckoutStarted(Envelope):
    event_type: Literal[EventType.CHECKOUT_STARTED]
    cart_id: Id
    checkout_id: Id
    item_count: Quantity
    subtotal: Money
    currency: Currency


class _OrderAmounts(Envelope):
    order_id: Id
    items: list[OrderLine] = Field(min_length=1, max_length=100)
    subtotal: Money = Field(description="Σ unit_price × quantity (gross sales of the order).")
    discount: Money = Field(description="Σ items.discount.")
    shipping: Money
    tax: Money
    total: Money = Field(description="subtotal − discount + shipping + tax.")
    currency: Currency

    @model_validator(mode="after")
    def _amounts_add_up(self) -> _OrderAmounts:
        if self.subtotal != sum(line.unit_price * line.quantity for line in self.items):
            raise ValueError("subtotal must equal Σ items.unit_price × items.quantity")
        if self.discount != sum(line.discount for line in self.items):
            raise ValueError("discount must equal Σ items.discount")
        if self.total != self.subtotal - self.discount + self.shipping + self.tax:
            raise ValueError("total must equal subtotal − discount + shipping + tax")
        return self


class OrderPlaced(_OrderAmounts):
    event_type: Literal[EventType.ORDER_PLACED]
    cart_id: Id
    payment_method: PaymentMethod
    customer_order_number: int = Field(ge=1, description="1 for the customer's first order, 2 for the second, ...")


class OrderCancelled(_OrderAmounts):
    """The whole order is cancelled; carries the order's lines and amounts and its context (country, ...)."""

    event_type: Literal[EventType.ORDER_CANCELLED]
    reason: Literal["customer", "fraud", "inventory", "payment_failed", "other"]


class Payment(Envelope):
    event_type: Literal[EventType.PAYMENT]
    order_id: Id
    payment_id: Id
    payment_status: PaymentStatus
    payment_method: PaymentMethod
    amount: Money
    currency: Currency


class Refund(Envelope):
    """A (partial) refund, carrying the original order's context."""

    event_type: Literal[EventType.REFUND]
    refund_id: Id
    order_id: Id
    items: list[RefundLine] = Field(min_length=1, max_length=100)
    shipping: Money = Field(description="Shipping refunded.")
    tax: Money = Field(description="Tax refunded.")
    amount: Money = Field(description="Σ items.amount + shipping + tax.")
    currency: Currency
    reason: Literal["damaged", "not_as_described", "changed_mind", "late_delivery", "other"]

    @model_validator(mode="after")
    def _amount_adds_up(self) -> Refund:
        if self.amount != sum(line.amount for line in self.items) + self.shipping + self.tax:
            raise ValueError("amount must equal Σ items.amount + shipping + tax")
        return self


Event = Annotated[
    PageView
    | ProductView
    | AddToCart
    | RemoveFromCart
    | CheckoutStarted
    | OrderPlaced
    | Payment
    | OrderCancelled
    | Refund,
    Field(discriminator="event_type"),
]

EVENT_MODELS: dict[EventType, type[Envelope]] = {
    EventType.PAGE_VIEW: PageView,
    EventType.PRODUCT_VIEW: ProductView,
    EventType.ADD_TO_CART: AddToCart,
    EventType.REMOVE_FROM_CART: RemoveFromCart,
    EventType.CHECKOUT_STARTED: CheckoutStarted,
    EventType.ORDER_PLACED: OrderPlaced,
    EventType.PAYMENT: Payment,
    EventType.ORDER_CANCELLED: OrderCancelled,
    EventType.REFUND: Refund,
}

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(raw: bytes | str) -> Envelope:
    """Validate one JSON-encoded event; raises pydantic.ValidationError naming the field at fault."""
    return EVENT_ADAPTER.validate_json(raw)  # type: ignore[return-value]


def json_schema() -> dict[str, object]:
    """JSON Schema (draft 2020-12) of one event message."""
    return EVENT_ADAPTER.json_schema()
