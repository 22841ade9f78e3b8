"""The simulated shop: its product catalog, markets (country -> currency, tax), and site pages.

The catalog is a fixed shop, built from its own seed (not the traffic ``--seed``): two runs with
different traffic seeds sell the same products at the same prices in the same categories, so their
events can be mixed in one lake without a product changing category or price.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl

from shoppulse.contract.events import CURRENCY_EXPONENTS

CATALOG_SEED = 20_240_501
DEFAULT_PRODUCTS = 5_000
ZIPF_EXPONENT = 0.9
"""Popularity of the product ranked r is proportional to 1 / r**ZIPF_EXPONENT (with 5,000 products the
best seller draws ~7% of product views, the top 10% of the catalog ~65%)."""

CURRENCIES: tuple[str, ...] = tuple(CURRENCY_EXPONENTS)
"""Currency codes; an array of currency codes indexes this tuple."""

# name, share of products, median price (USD), price spread (lognormal sigma)
CATEGORIES: tuple[tuple[str, float, float, float], ...] = (
    ("apparel", 0.18, 35.0, 0.55),
    ("shoes", 0.08, 75.0, 0.45),
    ("electronics", 0.09, 120.0, 0.9),
    ("home", 0.12, 40.0, 0.7),
    ("beauty", 0.10, 22.0, 0.5),
    ("sports", 0.07, 45.0, 0.7),
    ("toys", 0.06, 25.0, 0.6),
    ("books", 0.07, 16.0, 0.35),
    ("grocery", 0.06, 9.0, 0.5),
    ("jewelry", 0.04, 90.0, 0.8),
    ("garden", 0.05, 32.0, 0.6),
    ("pet", 0.04, 19.0, 0.5),
    ("office", 0.04, 14.0, 0.6),
)

# Units of each currency per USD, for list prices (the analytics FX table is the rollups' business).
PRICE_FX: dict[str, float] = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 150.0}


@dataclass(frozen=True)
class Market:
    """A country the shop sells to: its traffic share, the currency it pays in, and its tax rate."""

    country: str
    share: float
    currency: str
    tax_basis_points: int


MARKETS: tuple[Market, ...] = (
    Market("US", 0.33, "USD", 725),
    Market("CA", 0.05, "USD", 500),
    Market("GB", 0.12, "GBP", 2000),
    Market("DE", 0.10, "EUR", 1900),
    Market("FR", 0.07, "EUR", 2000),
    Market("ES", 0.04, "EUR", 2100),
    Market("IT", 0.04, "EUR", 2200),
    Market("NL", 0.03, "EUR", 2100),
    Market("IE", 0.01, "EUR", 2300),
    Market("JP", 0.10, "JPY", 1000),
    Market("AU", 0.04, "USD", 1000),
    Market("MX", 0.03, "USD", 1600),
    Market("BR", 0.02, "USD", 0),
    Market("IN", 0.02, "USD", 0),
)

# Shipping fee and free-shipping threshold (merchandise after discount), in minor units per currency.
SHIPPING_FEE: dict[str, int] = {"USD": 599, "EUR": 499, "GBP": 399, "JPY": 600}
FREE_SHIPPING_FROM: dict[str, int] = {"USD": 5000, "EUR": 4500, "GBP": 4000, "JPY": 6000}

STATIC_PAGES: tuple[tuple[str, str], ...] = (
    ("home", "/"),
    ("cart", "/cart"),
    ("checkout", "/checkout"),
    ("account", "/account"),
    ("account", "/account/orders"),
    ("account", "/account/wishlist"),
    ("other", "/pages/shipping"),
    ("other", "/pages/returns"),
    ("other", "/pages/contact"),
    ("other", "/pages/about"),
)
SEARCH_TERMS = 600


@dataclass(frozen=True)
class Catalog:
    """Products (index = position), their categories and prices, and the site's URL table."""

    product_ids: pl.Series  # "p_00042"
    category_of: np.ndarray  # product -> category index
    category_names: pl.Series  # category index -> name
    prices: np.ndarray  # (currency, product) -> list price in minor units (int64)
    popularity: np.ndarray  # Zipf probability of each product
    alias_probability: np.ndarray  # Walker alias table over products (O(1) sampling)
    alias: np.ndarray
    urls: pl.Series  # url table: static pages, then categories, then search terms, then products
    url_page_types: pl.Series  # page_type of each url table entry
    static_urls: int
    category_urls: int
    search_urls: int

    @property
    def size(self) -> int:
        return len(self.product_ids)

    def sample_products(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` product indexes drawn by Zipf popularity (Walker's alias method)."""
        column = rng.integers(0, self.size, n, dtype=np.int32)
        keep = rng.random(n) < self.alias_probability[column]
        return np.where(keep, column, self.alias[column])

    def category_url(self, category: np.ndarray) -> np.ndarray:
        return self.static_urls + category

    def search_url(self, term: np.ndarray) -> np.ndarray:
        return self.static_urls + self.category_urls + term

    def product_url(self, product: np.ndarray) -> np.ndarray:
        return self.static_urls + self.category_urls + self.search_urls + product


def _charm_price(amount: np.ndarray, currency: str) -> np.ndarray:
    """Shop-style list prices in minor units: 19.99 for two-decimal currencies, ¥1,980 / ¥490 for JPY."""
    if CURRENCY_EXPONENTS[currency] == 0:
        rounded = np.where(amount >= 1000, np.ceil(amount / 100) * 100 - 20, np.ceil(amount / 10) * 10)
        return np.maximum(rounded, 100).astype(np.int64)
    major = np.maximum(np.round(amount), 1.0)
    return (major * 100 - 1).astype(np.int64)


def _alias_table(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias table: draw column k uniformly, keep it with probability[k], else take alias[k]."""
    n = len(probabilities)
    scaled = probabilities * n
    probability = np.ones(n)
    alias = np.arange(n, dtype=np.int32)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        lo, hi = small.pop(), large.pop()
        probability[lo] = scaled[lo]
        alias[lo] = hi
        scaled[hi] -= 1.0 - scaled[lo]
        (small if scaled[hi] < 1.0 else large).append(hi)
    return probability, alias


def _slug(words: list[str]) -> str:
    return "-".join(words).lower().replace("'", "")


@lru_cache(maxsize=4)
def build_catalog(n_products: int = DEFAULT_PRODUCTS, seed: int = CATALOG_SEED) -> Catalog:
    """The shop's catalog of `n_products` products (deterministic in `seed`)."""
    if n_products < 1:
        raise ValueError("the catalog needs at least one product")
    rng = np.random.default_rng(seed)
    shares = np.array([c[1] for c in CATEGORIES])
    category_of = rng.choice(len(CATEGORIES), size=n_products, p=shares / shares.sum()).astype(np.int32)
    medians = np.array([c[2] for c in CATEGORIES])[category_of]
    sigmas = np.array([c[3] for c in CATEGORIES])[category_of]
    usd = medians * np.exp(rng.normal(0.0, 1.0, n_products) * sigmas)
    prices = np.stack([_charm_price(usd * PRICE_FX[cur], cur) for cur in CURRENCIES])

    # Popularity ranks are shuffled so best sellers are spread over categories.
    rank = rng.permutation(n_products) + 1
    weights = 1.0 / rank.astype(np.float64) ** ZIPF_EXPONENT
    popularity = weights / weights.sum()
    alias_probability, alias = _alias_table(popularity)

    from faker import Faker  # only needed here, once per catalog: keep it off the CLI's import path

    fake = Faker("en_US")
    fake.seed_instance(seed)
    product_slugs = [_slug([*fake.words(2), CATEGORIES[c][0]]) for c in category_of.tolist()]
    terms = [_slug(fake.words(int(k))).replace("-", "+") for k in rng.integers(1, 4, SEARCH_TERMS)]
    product_ids = [f"p_{i:05d}" for i in range(n_products)]

    urls = [url for _, url in STATIC_PAGES]
    page_types = [page for page, _ in STATIC_PAGES]
    urls += [f"/c/{name}" for name, *_ in CATEGORIES]
    page_types += ["category"] * len(CATEGORIES)
    urls += [f"/search?q={term}" for term in terms]
    page_types += ["search"] * len(terms)
    urls += [f"/p/{slug}-{pid}" for slug, pid in zip(product_slugs, product_ids, strict=True)]
    page_types += ["product"] * n_products

    return Catalog(
        product_ids=pl.Series("product_id", product_ids, dtype=pl.String),
        category_of=category_of,
        category_names=pl.Series("category", [c[0] for c in CATEGORIES], dtype=pl.String),
        prices=prices,
        popularity=popularity,
        alias_probability=alias_probability,
        alias=alias,
        urls=pl.Series("url_path", urls, dtype=pl.String),
        url_page_types=pl.Series("page_type", page_types, dtype=pl.String),
        static_urls=len(STATIC_PAGES),
        category_urls=len(CATEGORIES),
        search_urls=len(terms),
    )
