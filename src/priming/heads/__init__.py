"""priming.heads"""
