"""The demo shop's catalog: products and their photo galleries."""
