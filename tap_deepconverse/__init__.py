"""Singer tap for the DeepConverse Export API."""
