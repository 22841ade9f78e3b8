"""How the simulated shop's visitors behave, generated a window of session starts at a time.

A session picks a user (new or returning), a device and a traffic channel, browses pages and
products (Zipf popularity), may add products to the cart (and remove some), and may walk on to
checkout and an order. An order gets a payment (captured or failed); some orders are later
cancelled or (partially) refunded, days after the order, in a backend session.

All of it is vectorized with numpy over every session of a window: no per-event Python objects.
The result is columnar (one frame per event type); :mod:`simulator.encode` turns it into JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from shoppulse.contract.events import EventType
from simulator.catalog import CURRENCIES, FREE_SHIPPING_FROM, MARKETS, SHIPPING_FEE, Catalog
from simulator.ids import splitmix64

if TYPE_CHECKING:
    from simulator.faults import Incident

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

DEVICES = ("desktop", "mobile", "tablet")
CHANNELS = ("direct", "organic_search", "paid_search", "social", "email", "referral", "affiliate")
PAYMENT_METHODS = ("card", "paypal", "apple_pay", "google_pay", "bank_transfer", "klarna")
PAYMENT_STATUSES = ("captured", "failed")
CANCEL_REASONS = ("customer", "fraud", "inventory", "payment_failed", "other")
REFUND_REASONS = ("damaged", "not_as_described", "changed_mind", "late_delivery", "other")

COUNTRY_CODES = tuple(m.country for m in MARKETS)
MARKET_CURRENCY = np.array([CURRENCIES.index(m.currency) for m in MARKETS], dtype=np.uint8)
MARKET_TAX_BP = np.array([m.tax_basis_points for m in MARKETS], dtype=np.int64)
SHIPPING_FEES = np.array([SHIPPING_FEE[c] for c in CURRENCIES], dtype=np.int64)
FREE_SHIPPING = np.array([FREE_SHIPPING_FROM[c] for c in CURRENCIES], dtype=np.int64)

# Traffic shape: share of the average rate by UTC hour (a global shop: Americas, Europe, Japan) and weekday.
_HOURLY = np.array(
    [
        *(0.70, 0.62, 0.55, 0.50, 0.48, 0.52, 0.62, 0.78, 0.92, 1.02, 1.08, 1.12),  # 00-11 UTC
        *(1.15, 1.18, 1.22, 1.25, 1.28, 1.30, 1.32, 1.35, 1.38, 1.30, 1.10, 0.86),  # 12-23 UTC
    ]
)
HOURLY_SHAPE = _HOURLY / _HOURLY.mean()
_WEEKDAY = np.array([1.04, 1.02, 1.00, 0.99, 0.94, 0.96, 1.05])  # Monday .. Sunday
WEEKDAY_SHAPE = _WEEKDAY / _WEEKDAY.mean()

PROMO_NONE, PROMO_DAY, PROMO_FLASH = 0, 1, 2


@dataclass(frozen=True)
class Behaviour:
    """Knobs of the behaviour model (defaults give a believable mid-size shop)."""

    returning_share: float = 0.45
    device_mix: tuple[float, ...] = (0.36, 0.57, 0.07)
    sticky_device: float = 0.8  # chance a returning user comes back on their usual device
    channel_mix_new: tuple[float, ...] = (0.15, 0.32, 0.20, 0.15, 0.03, 0.08, 0.07)
    channel_mix_returning: tuple[float, ...] = (0.35, 0.20, 0.10, 0.07, 0.20, 0.04, 0.04)
    bounce: tuple[float, ...] = (0.32, 0.42, 0.38)  # by device
    product_views_p: float = 0.3  # geometric: mean 1 / p product views for a non-bouncing session
    max_product_views: int = 30
    extra_pages_base: float = 0.6
    extra_pages_per_view: float = 0.45
    max_pages: int = 50
    add_to_cart: float = 0.045  # per product view
    quantity_mix: tuple[float, ...] = (0.78, 0.14, 0.05, 0.02, 0.01)  # 1..5
    remove_from_cart: float = 0.12  # per cart line
    cart_page: float = 0.7
    checkout: float = 0.5  # sessions with a non-empty cart
    order: tuple[float, ...] = (0.74, 0.64, 0.70)  # checkouts that become orders, by device
    payment_failed: float = 0.035
    cancel: float = 0.025  # captured orders cancelled later
    refund: float = 0.07  # captured, not cancelled orders refunded later
    refund_line: float = 0.6
    refund_full_quantity: float = 0.75
    cancel_reasons: tuple[float, ...] = (0.6, 0.1, 0.2, 0.0, 0.1)
    refund_reasons: tuple[float, ...] = (0.2, 0.25, 0.35, 0.1, 0.1)
    payment_mix: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            "USD": (0.55, 0.15, 0.15, 0.10, 0.00, 0.05),
            "EUR": (0.35, 0.25, 0.10, 0.08, 0.07, 0.15),
            "GBP": (0.50, 0.20, 0.15, 0.08, 0.00, 0.07),
            "JPY": (0.60, 0.10, 0.10, 0.05, 0.15, 0.00),
        }
    )
    promo_day_share: float = 0.12
    flash_sale_share: float = 0.15
    promo_traffic: tuple[float, ...] = (1.0, 1.6, 2.5)  # by promo level
    promo_conversion: tuple[float, ...] = (1.0, 1.3, 1.5)
    max_order_lines: int = 100


# Mean gap before each step of a session, in ms (exponential, at least MIN_GAP_MS).
STEP_GAP_MS = {
    "page": 30_000,
    "view": 40_000,
    "add": 10_000,
    "remove": 25_000,
    "cart_page": 20_000,
    "checkout_page": 30_000,
    "checkout": 10_000,
    "order": 90_000,
    "payment": 1_500,
}
MIN_GAP_MS = 300

# Page kinds (home, category, search, account, other) of landing pages and of later page views.
LANDING_PAGE_MIX = np.cumsum([0.42, 0.33, 0.15, 0.04, 0.06])
BROWSING_PAGE_MIX = np.cumsum([0.12, 0.45, 0.30, 0.08, 0.05])

# Order of the steps within a session: an integer key below 2**KEY_BITS. Browsing (page and product
# views) gets even random keys below KEY_CART, an add-to-cart its view's key + 1, a removal a key
# between its add and KEY_CART; the cart page, checkout page, checkout, order and payment follow.
KEY_BITS = 33
KEY_CART = 1 << 32


def _browse_keys(rng: np.random.Generator, n: int) -> np.ndarray:
    return 2 * (1 + rng.integers(0, KEY_CART // 2 - 2, n, dtype=np.int64))


def _cdf(weights: tuple[float, ...] | np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return np.cumsum(w / w.sum())


def _pick(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    """`n` categorical draws from one distribution given as a CDF."""
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(cdf) - 1).astype(np.uint8)


def _pick_rows(rng: np.random.Generator, cdfs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of `cdfs` (each row a CDF)."""
    u = rng.random(len(cdfs))
    return np.minimum((u[:, None] >= cdfs).sum(axis=1), cdfs.shape[1] - 1).astype(np.uint8)


def _group_starts(groups: np.ndarray) -> np.ndarray:
    """Indexes where a new group begins in a sorted group array."""
    if len(groups) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])


def _cumsum_within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Running sum of `values` restarting at each group (groups sorted)."""
    total = np.cumsum(values)
    starts = _group_starts(groups)
    offsets = np.zeros(len(values), dtype=total.dtype)
    if len(starts):
        before = total[starts] - values[starts]
        offsets = np.repeat(before, np.diff(np.r_[starts, len(values)]))
    return total - offsets


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal (sorted) groups."""
    return _cumsum_within(np.ones(len(groups), dtype=np.int64), groups) - 1


class Calendar:
    """Traffic multiplier and promotions per minute: daily and weekly cycles, promo days, flash sales,
    and injected incidents (outages, spikes)."""

    def __init__(
        self, seed: int, behaviour: Behaviour, seasonal: bool = True, incidents: Sequence[Incident] = ()
    ) -> None:
        self.salt = np.uint64((seed * 0x9E3779B1 + 0x5EED) & 0xFFFFFFFFFFFFFFFF)
        self.behaviour = behaviour
        self.seasonal = seasonal
        self.incidents = tuple(incidents)

    def promo_level(self, minutes: np.ndarray) -> np.ndarray:
        """PROMO_NONE / PROMO_DAY / PROMO_FLASH for each epoch minute (a pure function of seed and day)."""
        if not self.seasonal:
            return np.zeros(len(minutes), dtype=np.uint8)
        days = (minutes // (DAY_MS // MINUTE_MS)).astype(np.uint64)
        h = splitmix64(days ^ self.salt)
        promo_day = (h % np.uint64(1000)) < np.uint64(int(self.behaviour.promo_day_share * 1000))
        flash_day = ((h >> np.uint64(10)) % np.uint64(1000)) < np.uint64(int(self.behaviour.flash_sale_share * 1000))
        flash_start_hour = 8 + ((h >> np.uint64(20)) % np.uint64(14)).astype(np.int64)
        hour = (minutes // 60) % 24
        in_flash = flash_day & (hour >= flash_start_hour) & (hour < flash_start_hour + 2)
        return np.where(in_flash, PROMO_FLASH, np.where(promo_day, PROMO_DAY, PROMO_NONE)).astype(np.uint8)

    def multiplier(self, minutes: np.ndarray) -> np.ndarray:
        """Relative traffic for each epoch minute (1.0 = the average non-promo minute), incidents applied."""
        base = self.seasonal_multiplier(minutes)
        for incident in self.incidents:
            base = base * incident.factors(minutes)
        return base

    def seasonal_multiplier(self, minutes: np.ndarray) -> np.ndarray:
        """Relative traffic for each epoch minute from the daily and weekly cycles and promotions alone."""
        if not self.seasonal:
            return np.ones(len(minutes))
        minute_of_day = minutes % (24 * 60)
        hour_pos = minute_of_day / 60.0 - 0.5  # hourly values describe the middle of each hour
        lo = np.floor(hour_pos).astype(np.int64)
        frac = hour_pos - lo
        daily = HOURLY_SHAPE[lo % 24] * (1 - frac) + HOURLY_SHAPE[(lo + 1) % 24] * frac
        weekday = (minutes // (24 * 60) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        promo = np.asarray(self.behaviour.promo_traffic)[self.promo_level(minutes)]
        return daily * WEEKDAY_SHAPE[weekday] * promo

    def integral(self, start_ms: int, end_ms: int) -> float:
        """∫ multiplier dt over [start_ms, end_ms), in ms."""
        first, last = start_ms // MINUTE_MS, -(-end_ms // MINUTE_MS)
        minutes = np.arange(first, last, dtype=np.int64)
        lo = np.maximum(minutes * MINUTE_MS, start_ms)
        hi = np.minimum((minutes + 1) * MINUTE_MS, end_ms)
        return float((self.multiplier(minutes) * (hi - lo)).sum())


class Population:
    """Every user the shop has seen: country, usual device, how active they are, orders so far."""

    def __init__(self) -> None:
        self.size = 0
        self._country = np.zeros(0, dtype=np.uint8)
        self._device = np.zeros(0, dtype=np.uint8)
        self._cum_activity = np.zeros(0, dtype=np.float64)
        self._orders = np.zeros(0, dtype=np.int64)

    def _grow(self, needed: int) -> None:
        capacity = len(self._country)
        if needed <= capacity:
            return
        new_capacity = max(needed, 2 * capacity, 1024)
        for name in ("_country", "_device", "_cum_activity", "_orders"):
            old = getattr(self, name)
            grown = np.zeros(new_capacity, dtype=old.dtype)
            grown[: self.size] = old[: self.size]
            setattr(self, name, grown)

    def add(self, rng: np.random.Generator, n: int, behaviour: Behaviour, prior_orders: bool = False) -> np.ndarray:
        """Create `n` users; returns their indexes. `prior_orders` gives them an order history."""
        first = self.size
        self._grow(first + n)
        end = first + n
        self._country[first:end] = _pick(rng, _cdf([m.share for m in MARKETS]), n)
        self._device[first:end] = _pick(rng, _cdf(behaviour.device_mix), n)
        activity = rng.lognormal(0.0, 1.0, n)
        base = self._cum_activity[first - 1] if first else 0.0
        self._cum_activity[first:end] = base + np.cumsum(activity)
        if prior_orders:
            self._orders[first:end] = np.where(rng.random(n) < 0.35, rng.geometric(0.5, n), 0)
        self.size = end
        return np.arange(first, end, dtype=np.int64)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` existing users, chosen in proportion to their activity."""
        cum = self._cum_activity[: self.size]
        picks = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
        return np.minimum(picks, self.size - 1).astype(np.int64)

    def country(self, users: np.ndarray) -> np.ndarray:
        return self._country[users]

    def device(self, users: np.ndarray) -> np.ndarray:
        return self._device[users]

    def number_orders(self, users: np.ndarray, order_ts: np.ndarray) -> np.ndarray:
        """customer_order_number of new orders (in order of time per user); records them."""
        order = np.lexsort((order_ts, users))
        sorted_users = users[order]
        numbers = np.empty(len(users), dtype=np.int64)
        numbers[order] = self._orders[sorted_users] + _rank_within(sorted_users) + 1
        np.add.at(self._orders, users, 1)
        return numbers


@dataclass
class WindowEvents:
    """Columnar events of one window, one frame per event type (plus order/refund lines).

    Shopper events have ts (event time, epoch ms), session (session number) and srow (the session's
    row in `sessions`, which holds user, country, device and channel). Cancellations and refunds
    happen in backend sessions: they carry ts, session (backend session number) and the original
    order's user, country, device and channel themselves.
    """

    sessions: pl.DataFrame  # session, user, country, device, channel
    frames: dict[EventType, pl.DataFrame]
    order_lines: pl.DataFrame  # order_row, product, quantity, unit_price, discount
    cancel_lines: pl.DataFrame  # same, per order_cancelled row
    refund_lines: pl.DataFrame  # refund_row, product, quantity, amount

    @property
    def count(self) -> int:
        return sum(frame.height for frame in self.frames.values())


class Shop:
    """The simulated shop's traffic: state (users, counters) plus the behaviour model."""

    def __init__(
        self,
        catalog: Catalog,
        seed: int,
        behaviour: Behaviour | None = None,
        seasonal: bool = True,
        incidents: Sequence[Incident] = (),
    ):
        self.catalog = catalog
        self.behaviour = behaviour or Behaviour()
        self.calendar = Calendar(seed, self.behaviour, seasonal=seasonal, incidents=incidents)
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        self.population = Population()
        self.next_session = 0
        self.next_backend_session = 0
        self.next_order = 0
        self.next_refund = 0

    # --- sessions ------------------------------------------------------------------------------
    def session_starts(self, start_ms: int, end_ms: int, sessions_per_ms: float) -> np.ndarray:
        """Sorted start times of the sessions beginning in [start_ms, end_ms) (Poisson per minute)."""
        rng = self.rng
        minutes = np.arange(start_ms // MINUTE_MS, -(-end_ms // MINUTE_MS), dtype=np.int64)
        lo = np.maximum(minutes * MINUTE_MS, start_ms)
        hi = np.minimum((minutes + 1) * MINUTE_MS, end_ms)
        expected = sessions_per_ms * self.calendar.multiplier(minutes) * (hi - lo)
        counts = rng.poisson(expected)
        offsets = (rng.random(int(counts.sum())) * np.repeat(hi - lo, counts)).astype(np.int64)
        return np.sort(np.repeat(lo, counts) + offsets)

    def seed_population(self, n_users: int) -> None:
        """Users who visited (and maybe bought) before the simulation starts."""
        if n_users > 0:
            self.population.add(self.rng, n_users, self.behaviour, prior_orders=True)

    def generate(self, start_ms: int, end_ms: int, sessions_per_ms: float) -> WindowEvents:
        """All events of the sessions starting in [start_ms, end_ms), plus their later cancellations/refunds."""
        starts = self.session_starts(start_ms, end_ms, sessions_per_ms)
        return self.sessions(starts)

    def sessions(self, starts: np.ndarray) -> WindowEvents:
        """Events of sessions starting at `starts` (sorted epoch ms)."""
        b, rng, cat = self.behaviour, self.rng, self.catalog
        n = len(starts)
        session = self.next_session + np.arange(n, dtype=np.int64)
        self.next_session += n
        promo = self.calendar.promo_level(starts // MINUTE_MS)

        # Who: a new or returning user, their market, this session's device and channel.
        returning = rng.random(n) < (b.returning_share if self.population.size else 0.0)
        user = np.empty(n, dtype=np.int64)
        user[returning] = self.population.sample(rng, int(returning.sum()))
        user[~returning] = self.population.add(rng, int((~returning).sum()), b)
        country = self.population.country(user)
        currency = MARKET_CURRENCY[country]
        usual_device = self.population.device(user)
        device = np.where(
            returning & (rng.random(n) < b.sticky_device), usual_device, _pick(rng, _cdf(b.device_mix), n)
        ).astype(np.uint8)
        channel_cdfs = np.stack([_cdf(b.channel_mix_new), _cdf(b.channel_mix_returning)])
        promo_boost = np.array([1, 1, 1.5, 1, 2.0, 1, 1])  # promos pull email and paid-search traffic
        boosted = np.stack([_cdf(np.array(mix) * promo_boost) for mix in (b.channel_mix_new, b.channel_mix_returning)])
        channel = _pick_rows(
            rng, np.where((promo > 0)[:, None], boosted[returning.astype(int)], channel_cdfs[returning.astype(int)])
        )

        # Browsing: bounce or view products; extra page views along the way.
        bounced = rng.random(n) < np.asarray(b.bounce)[device]
        views = np.where(bounced, 0, np.minimum(rng.geometric(b.product_views_p, n), b.max_product_views))
        pages = 1 + np.minimum(rng.poisson(b.extra_pages_base + b.extra_pages_per_view * views), b.max_pages - 1)

        view_session = np.repeat(np.arange(n), views)
        view_product = cat.sample_products(rng, len(view_session))
        view_key = _browse_keys(rng, len(view_session))

        # Cart: some viewed products are added (right after the view), some lines removed again.
        conversion = np.asarray(b.promo_conversion)[promo] * np.where(returning, 1.2, 1.0)
        conversion = conversion * np.where(channel == CHANNELS.index("email"), 1.3, 1.0)
        conversion = conversion * np.where(device == DEVICES.index("mobile"), 0.85, 1.0)
        added = rng.random(len(view_session)) < b.add_to_cart * conversion[view_session]
        add_session = view_session[added]
        add_product = view_product[added]
        add_key = view_key[added] + 1  # right after its product view
        add_quantity = (_pick(rng, _cdf(b.quantity_mix), len(add_session)) + 1).astype(np.int64)
        removed = rng.random(len(add_session)) < b.remove_from_cart
        remove_key = (
            add_key[removed] + 1 + (rng.random(int(removed.sum())) * (KEY_CART - add_key[removed])).astype(np.int64)
        )
        lines_left = np.bincount(add_session[~removed], minlength=n)
        checkout = (lines_left > 0) & (rng.random(n) < np.minimum(b.checkout * np.where(returning, 1.1, 1.0), 0.95))
        cart_page = (lines_left > 0) & (rng.random(n) < b.cart_page)
        order_p = np.minimum(np.asarray(b.order)[device] * np.where(promo > 0, 1.1, 1.0), 0.95)
        ordered = checkout & (rng.random(n) < order_p)

        # Page views: a landing page, then pages among the product views; cart/checkout pages before checkout.
        page_session = np.repeat(np.arange(n), pages)
        landing = np.zeros(len(page_session), dtype=bool)
        landing[np.cumsum(pages) - pages] = True  # each session's first page
        page_url = self._page_urls(rng, landing)
        page_key = np.where(landing, 0, _browse_keys(rng, len(page_session)))
        cart_sessions = np.flatnonzero(cart_page)
        checkout_sessions = np.flatnonzero(checkout)
        page_session = np.concatenate([page_session, cart_sessions, checkout_sessions])
        page_url = np.concatenate([page_url, np.full(len(cart_sessions), 1), np.full(len(checkout_sessions), 2)])
        page_key = np.concatenate(
            [page_key, np.full(len(cart_sessions), KEY_CART + 1), np.full(len(checkout_sessions), KEY_CART + 2)]
        )
        page_step = np.concatenate(
            [
                np.where(landing, -1, 0),
                np.full(len(cart_sessions), 4),
                np.full(len(checkout_sessions), 5),
            ]
        )
        order_sessions = np.flatnonzero(ordered)

        # Order the steps of each session and stamp them: start + running sum of gaps.
        steps = [
            (page_session, page_key, page_step),  # -1 landing, 0 page, 4 cart page, 5 checkout page
            (view_session, view_key, np.full(len(view_session), 1)),
            (add_session, add_key, np.full(len(add_session), 2)),
            (add_session[removed], remove_key, np.full(int(removed.sum()), 3)),
            (checkout_sessions, np.full(len(checkout_sessions), KEY_CART + 3), np.full(len(checkout_sessions), 6)),
            (order_sessions, np.full(len(order_sessions), KEY_CART + 4), np.full(len(order_sessions), 7)),
            (order_sessions, np.full(len(order_sessions), KEY_CART + 5), np.full(len(order_sessions), 8)),
        ]
        step_session = np.concatenate([s for s, _, _ in steps])
        step_kind = np.concatenate([k for _, _, k in steps])
        sizes = [len(s) for s, _, _ in steps]
        step_key = np.concatenate([k for _, k, _ in steps]).astype(np.int64)
        order = np.argsort((step_session.astype(np.int64) << KEY_BITS) | step_key, kind="stable")
        gap_means = np.array(
            [STEP_GAP_MS[k] for k in ("page", "view", "add", "remove", "cart_page", "checkout_page")]
            + [STEP_GAP_MS[k] for k in ("checkout", "order", "payment")]
            + [0.0]
        )
        sorted_kind = step_kind[order]
        gaps = np.maximum(rng.exponential(1.0, len(order)) * gap_means[sorted_kind], MIN_GAP_MS).astype(np.int64)
        gaps[sorted_kind == -1] = 0  # the landing page is the session start
        sorted_ts = starts[step_session[order]] + _cumsum_within(gaps, step_session[order])
        ts = np.empty(len(order), dtype=np.int64)
        ts[order] = sorted_ts
        bounds = np.cumsum([0, *sizes])
        page_ts, view_ts, add_ts, remove_ts, checkout_ts, order_ts, payment_ts = (
            ts[bounds[i] : bounds[i + 1]] for i in range(len(steps))
        )

        context = {"user": user, "country": country, "device": device, "channel": channel}

        def envelope(sessions: np.ndarray, when: np.ndarray) -> dict[str, np.ndarray]:
            return {"ts": when, "session": session[sessions], "srow": sessions.astype(np.int64)}

        frames: dict[EventType, pl.DataFrame] = {}
        frames[EventType.PAGE_VIEW] = pl.DataFrame({**envelope(page_session, page_ts), "url": page_url})
        frames[EventType.PRODUCT_VIEW] = pl.DataFrame(
            {
                **envelope(view_session, view_ts),
                "product": view_product,
                "currency": currency[view_session],
                "price": cat.prices[currency[view_session], view_product],
            }
        )
        cart_cols = {
            "product": add_product,
            "quantity": add_quantity,
            "currency": currency[add_session],
            "unit_price": cat.prices[currency[add_session], add_product],
        }
        frames[EventType.ADD_TO_CART] = pl.DataFrame({**envelope(add_session, add_ts), **cart_cols})
        frames[EventType.REMOVE_FROM_CART] = pl.DataFrame(
            {**envelope(add_session[removed], remove_ts), **{k: v[removed] for k, v in cart_cols.items()}}
        )

        # Checkout: the cart's remaining lines.
        keep = ~removed
        items_left = np.bincount(add_session[keep], weights=add_quantity[keep], minlength=n).astype(np.int64)
        value_left = np.bincount(
            add_session[keep], weights=(cart_cols["unit_price"] * add_quantity)[keep], minlength=n
        ).astype(np.int64)
        frames[EventType.CHECKOUT_STARTED] = pl.DataFrame(
            {
                **envelope(checkout_sessions, checkout_ts),
                "item_count": np.minimum(items_left[checkout_sessions], 1000),
                "subtotal": value_left[checkout_sessions],
                "currency": currency[checkout_sessions],
            }
        )

        orders, lines = self._orders(
            order_sessions, order_ts, add_session[keep], add_product[keep], add_quantity[keep], currency, user, promo
        )
        frames[EventType.ORDER_PLACED] = pl.DataFrame({**envelope(order_sessions, order_ts), **orders})
        failed = rng.random(len(order_sessions)) < b.payment_failed
        frames[EventType.PAYMENT] = pl.DataFrame(
            {
                **envelope(order_sessions, payment_ts),
                "order": orders["order"],
                "status": failed.astype(np.uint8),
                "payment_method": orders["payment_method"],
                "amount": orders["total"],
                "currency": orders["currency"],
            }
        )
        order_context = pl.DataFrame({name: values[order_sessions] for name, values in context.items()})
        cancels, cancel_lines, refunds, refund_lines = self._after_sales(
            pl.concat([frames[EventType.ORDER_PLACED], order_context], how="horizontal"), lines, failed, payment_ts
        )
        frames[EventType.ORDER_CANCELLED] = cancels
        frames[EventType.REFUND] = refunds
        return WindowEvents(
            sessions=pl.DataFrame({"session": session, **context}),
            frames=frames,
            order_lines=lines,
            cancel_lines=cancel_lines,
            refund_lines=refund_lines,
        )

    def _page_urls(self, rng: np.random.Generator, landing: np.ndarray) -> np.ndarray:
        """URL table index of each page view (landing pages skew to home, category and search)."""
        cat = self.catalog
        n = len(landing)
        kind = np.empty(n, dtype=np.uint8)  # 0 home, 1 category, 2 search, 3 account, 4 other
        kind[landing] = _pick(rng, LANDING_PAGE_MIX, int(landing.sum()))
        kind[~landing] = _pick(rng, BROWSING_PAGE_MIX, int((~landing).sum()))
        pick = rng.random(n)
        url = np.zeros(n, dtype=np.int32)  # home: "/"
        for code, first, count in (
            (1, cat.static_urls, cat.category_urls),
            (2, cat.static_urls + cat.category_urls, cat.search_urls),
            (3, 3, 3),  # /account, /account/orders, /account/wishlist
            (4, 6, 4),  # /pages/...
        ):
            chosen = kind == code
            url[chosen] = first + (pick[chosen] * count).astype(np.int32)
        return url

    # --- orders --------------------------------------------------------------------------------
    def _orders(
        self,
        sessions: np.ndarray,
        order_ts: np.ndarray,
        line_session: np.ndarray,
        line_product: np.ndarray,
        line_quantity: np.ndarray,
        currency_of_session: np.ndarray,
        user_of_session: np.ndarray,
        promo_of_session: np.ndarray,
    ) -> tuple[dict[str, np.ndarray], pl.DataFrame]:
        """Order amounts (integer minor units, exact) and their lines (the cart, merged by product)."""
        b, rng, cat = self.behaviour, self.rng, self.catalog
        n = len(sessions)
        order_no = self.next_order + np.arange(n, dtype=np.int64)
        self.next_order += n
        row_of_session = np.full(len(currency_of_session), -1, dtype=np.int64)
        row_of_session[sessions] = np.arange(n)
        in_order = row_of_session[line_session] >= 0
        lines = (
            pl.DataFrame(
                {
                    "order_row": row_of_session[line_session[in_order]],
                    "product": line_product[in_order],
                    "quantity": line_quantity[in_order],
                }
            )
            .group_by("order_row", "product")
            .agg(pl.col("quantity").sum())
            .sort("order_row", "product")
            .filter(pl.int_range(pl.len()).over("order_row") < b.max_order_lines)
        )
        row = lines["order_row"].to_numpy()
        product = lines["product"].to_numpy()
        quantity = np.minimum(lines["quantity"].to_numpy(), 1000)
        currency = currency_of_session[sessions]
        unit_price = cat.prices[currency[row], product]
        gross = unit_price * quantity

        # Discount (percent of the order): promo codes on promo days and flash sales, welcome codes for
        # first orders, the odd coupon otherwise. Each line carries its share, rounded down.
        user = user_of_session[sessions]
        number = self.population.number_orders(user, order_ts)
        promo = promo_of_session[sessions]
        u = rng.random(n)
        percent = np.select(
            [
                (promo == PROMO_FLASH) & (u < 0.6),
                (promo == PROMO_DAY) & (u < 0.55),
                (number == 1) & (u < 0.3),
                u < 0.08,
            ],
            [25, 20, 10, 15],
            default=0,
        ).astype(np.int64)
        line_discount = gross * percent[row] // 100
        subtotal = np.bincount(row, weights=gross, minlength=n).astype(np.int64)
        discount = np.bincount(row, weights=line_discount, minlength=n).astype(np.int64)
        merchandise = subtotal - discount
        shipping = np.where(merchandise >= FREE_SHIPPING[currency], 0, SHIPPING_FEES[currency])
        country = self.population.country(user)
        tax = ((merchandise + shipping) * MARKET_TAX_BP[country] + 5000) // 10000
        method_cdfs = np.stack([_cdf(b.payment_mix[c]) for c in CURRENCIES])
        payment_method = _pick_rows(rng, method_cdfs[currency])
        orders = {
            "order": order_no,
            "subtotal": subtotal,
            "discount": discount,
            "shipping": shipping.astype(np.int64),
            "tax": tax.astype(np.int64),
            "total": (merchandise + shipping + tax).astype(np.int64),
            "currency": currency,
            "payment_method": payment_method,
            "customer_order_number": number,
        }
        line_frame = pl.DataFrame(
            {
                "order_row": row,
                "product": product,
                "quantity": quantity,
                "unit_price": unit_price,
                "discount": line_discount,
            }
        )
        return orders, line_frame

    def _after_sales(
        self, orders: pl.DataFrame, lines: pl.DataFrame, payment_failed: np.ndarray, payment_ts: np.ndarray
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """Cancellations (failed payments, and some captured orders) and refunds, days after the order."""
        b, rng = self.behaviour, self.rng
        n = orders.height
        order_ts = orders["ts"].to_numpy()
        cancelled_later = ~payment_failed & (rng.random(n) < b.cancel)
        cancelled = payment_failed | cancelled_later
        refunded = ~cancelled & (rng.random(n) < b.refund)
        cancel_delay = np.where(
            payment_failed,
            rng.integers(5 * MINUTE_MS, 30 * MINUTE_MS, n),
            rng.integers(HOUR_MS, 48 * HOUR_MS, n),
        )
        cancel_ts = np.where(payment_failed, payment_ts, order_ts) + cancel_delay
        cancel_reason = np.where(
            payment_failed, CANCEL_REASONS.index("payment_failed"), _pick(rng, _cdf(b.cancel_reasons), n)
        ).astype(np.uint8)
        refund_delay = np.minimum(2 * DAY_MS + rng.exponential(5 * DAY_MS, n), 30 * DAY_MS).astype(np.int64)

        context = ["user", "country", "device", "channel"]
        cancel_rows = np.flatnonzero(cancelled)
        cancels = (
            orders[cancel_rows]
            .select(
                *context,
                "order",
                "subtotal",
                "discount",
                "shipping",
                "tax",
                "total",
                "currency",
            )
            .with_columns(
                ts=pl.Series(cancel_ts[cancel_rows]),
                session=pl.Series(self._backend_sessions(len(cancel_rows))),
                reason=pl.Series(cancel_reason[cancel_rows]),
            )
        )
        row_map = np.full(n, -1, dtype=np.int64)
        row_map[cancel_rows] = np.arange(len(cancel_rows))
        cancel_lines = lines.with_columns(order_row=pl.Series(row_map[lines["order_row"].to_numpy()])).filter(
            pl.col("order_row") >= 0
        )

        # Refunds: some lines, some of their quantity; shipping only when everything is returned; tax pro rata.
        refund_rows = np.flatnonzero(refunded)
        row_map = np.full(n, -1, dtype=np.int64)
        row_map[refund_rows] = np.arange(len(refund_rows))
        candidates = lines.with_columns(refund_row=pl.Series(row_map[lines["order_row"].to_numpy()])).filter(
            pl.col("refund_row") >= 0
        )
        r_row = candidates["refund_row"].to_numpy()
        first_line = np.r_[True, r_row[1:] != r_row[:-1]] if len(r_row) else np.zeros(0, dtype=bool)
        chosen = rng.random(len(r_row)) < b.refund_line
        none_chosen = np.bincount(r_row, weights=chosen, minlength=len(refund_rows)) == 0
        chosen |= first_line & none_chosen[r_row]
        q = candidates["quantity"].to_numpy()
        partial = rng.random(len(r_row)) >= b.refund_full_quantity
        refund_q = np.where(partial, 1 + (rng.random(len(r_row)) * q).astype(np.int64), q).clip(1, q)
        line_net = candidates["unit_price"].to_numpy() * q - candidates["discount"].to_numpy()
        line_amount = line_net * refund_q // q
        full_line = chosen & (refund_q == q)
        lines_full = np.bincount(r_row, weights=full_line, minlength=len(refund_rows))
        lines_total = np.bincount(r_row, minlength=len(refund_rows))
        everything = lines_full == lines_total
        merchandise = np.bincount(r_row[chosen], weights=line_amount[chosen], minlength=len(refund_rows)).astype(
            np.int64
        )
        refunded_orders = orders[refund_rows]
        shipping = np.where(everything, refunded_orders["shipping"].to_numpy(), 0)
        taxable = (
            refunded_orders["subtotal"].to_numpy()
            - refunded_orders["discount"].to_numpy()
            + refunded_orders["shipping"].to_numpy()
        )
        tax = np.where(
            taxable > 0, refunded_orders["tax"].to_numpy() * (merchandise + shipping) // np.maximum(taxable, 1), 0
        )
        refund_no = self.next_refund + np.arange(len(refund_rows), dtype=np.int64)
        self.next_refund += len(refund_rows)
        refunds = refunded_orders.select(*context, "order", "currency").with_columns(
            ts=pl.Series(order_ts[refund_rows] + refund_delay[refund_rows]),
            session=pl.Series(self._backend_sessions(len(refund_rows))),
            refund=pl.Series(refund_no),
            shipping=pl.Series(shipping.astype(np.int64)),
            tax=pl.Series(tax.astype(np.int64)),
            amount=pl.Series((merchandise + shipping + tax).astype(np.int64)),
            reason=pl.Series(_pick(rng, _cdf(b.refund_reasons), len(refund_rows))),
        )
        refund_lines = pl.DataFrame(
            {
                "refund_row": r_row[chosen],
                "product": candidates["product"].to_numpy()[chosen],
                "quantity": refund_q[chosen],
                "amount": line_amount[chosen],
            }
        )
        return cancels, cancel_lines, refunds, refund_lines

    def _backend_sessions(self, n: int) -> np.ndarray:
        first = self.next_backend_session
        self.next_backend_session += n
        return np.arange(first, first + n, dtype=np.int64)
