"""Downstream metrics (retrieval recall, VQA accuracy, classification and consistency)."""
