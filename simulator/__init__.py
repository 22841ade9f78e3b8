"""Realistic e-commerce traffic generator that produces ShopPulse events into Kafka."""
