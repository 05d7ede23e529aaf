"""Evaluation: downstream metrics (retrieval recall, VQA accuracy, classification, consistency) and held-out pre-training scores."""
