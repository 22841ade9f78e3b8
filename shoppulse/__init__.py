"""ShopPulse core: settings, event contract, lake, rollups and the local stack.

Nothing in this package imports dagster or fastapi; the Dagster definitions
(`pipelines`, `assets`, `resources`) and the HTTP service (`api`) are thin
shells over it.
"""
