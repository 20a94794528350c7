"""priming.corpus"""
