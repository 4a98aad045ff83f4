"""shop_demo: a small shop showing hidream_models end to end, offline."""
