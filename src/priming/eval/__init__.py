"""priming.eval"""
