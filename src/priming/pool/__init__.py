"""priming.pool"""
