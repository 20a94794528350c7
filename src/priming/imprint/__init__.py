"""priming.imprint"""
